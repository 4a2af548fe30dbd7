//! What tokens cost, per model, in CNY per million tokens (`MODEL_PRICES`), with DeepSeek's
//! peak hours at a multiple (`PEAK_PRICE_MULTIPLIER`, for `deepseek*` models only).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelPrice {
    pub cache_hit: f64,
    pub cache_miss: f64,
    pub output: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Prices {
    pub models: Vec<(String, ModelPrice)>,
    pub peak_multiplier: f64,
}

impl Prices {
    /// `model=hit/miss/output,…`, e.g. `deepseek-flash=0.04/2/3`.
    pub fn parse(raw: &str, peak_multiplier: f64) -> Result<Self, String> {
        let mut models = Vec::new();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (model, numbers) =
                entry.split_once('=').ok_or_else(|| format!("{entry:?} is not model=hit/miss/output"))?;
            let numbers: Vec<f64> = numbers
                .split('/')
                .map(|n| n.trim().parse::<f64>().ok().filter(|n| n.is_finite() && *n >= 0.0))
                .collect::<Option<_>>()
                .ok_or_else(|| format!("{entry:?}: prices are three non-negative numbers"))?;
            let [cache_hit, cache_miss, output] = numbers[..] else {
                return Err(format!("{entry:?}: prices are hit/miss/output"));
            };
            models.push((model.trim().to_string(), ModelPrice { cache_hit, cache_miss, output }));
        }
        Ok(Self { models, peak_multiplier })
    }

    /// CNY for `tokens` of `kind` (`hit`, `miss`, `output`) of `model` at `rate`
    /// (`peak`/`off_peak`); `None` for a model without a price.
    pub fn cost(&self, model: &str, kind: &str, rate: &str, tokens: i64) -> Option<f64> {
        let (_, price) = self.models.iter().find(|(m, _)| super::safe_part(m) == model)?;
        let per_million = match kind {
            "hit" => price.cache_hit,
            "miss" => price.cache_miss,
            _ => price.output,
        };
        let multiplier = if rate == "peak" && model.starts_with("deepseek") { self.peak_multiplier } else { 1.0 };
        Some(tokens as f64 / 1_000_000.0 * per_million * multiplier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_read_per_model_and_peak_hours_cost_more_for_deepseek_only() {
        let prices = Prices::parse("deepseek-flash=0.04/2/3, qwen-plus=0.16/0.8/2", 2.0).unwrap();
        let cases = [
            ("a million missed tokens off-peak", "deepseek-flash", "miss", "off_peak", 1_000_000, Some(2.0)),
            ("the same at peak", "deepseek-flash", "miss", "peak", 1_000_000, Some(4.0)),
            ("cache hits", "deepseek-flash", "hit", "off_peak", 500_000, Some(0.02)),
            ("output", "deepseek-flash", "output", "off_peak", 2_000_000, Some(6.0)),
            ("another provider has no peak", "qwen-plus", "output", "peak", 1_000_000, Some(2.0)),
            ("a model without a price", "gpt-x", "output", "peak", 1_000_000, None),
        ];
        for (label, model, kind, rate, tokens, expected) in cases {
            let cost = prices.cost(model, kind, rate, tokens);
            assert_eq!(cost.map(|c| (c * 1e6).round() / 1e6), expected, "{label}");
        }
        for bad in ["deepseek-flash", "deepseek-flash=1/2", "x=1/2/-3", "x=a/b/c"] {
            assert!(Prices::parse(bad, 2.0).is_err(), "{bad}");
        }
        assert_eq!(Prices::parse("", 2.0).unwrap().models, vec![]);
    }
}
