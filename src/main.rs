use companion_backend::configuration::Settings;
use companion_backend::healthcheck;
use companion_backend::startup::Application;
use companion_backend::telemetry::{get_subscriber, init_subscriber};

fn main() -> std::process::ExitCode {
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return match healthcheck::probe(settings.port) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if std::env::args().nth(1).as_deref() == Some("operator") {
        return operator_command(&settings);
    }
    if !settings.log_backtraces {
        // With RUST_BACKTRACE set, every error would carry a stack trace into the JSON
        // logs; only LOG_BACKTRACES=true asks for that. Set before any thread starts.
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("could not start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(settings))
}

async fn serve(settings: Settings) -> std::process::ExitCode {
    init_subscriber(get_subscriber("companion-backend", "info", std::io::stdout));
    let result = async {
        let app = Application::build(settings).await?;
        tracing::info!(port = app.port(), "listening");
        app.run_until_stopped().await
    }
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "fatal");
            eprintln!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `companion-backend operator …`: operator accounts for the console (see `console::cli`).
fn operator_command(settings: &Settings) -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(2).collect();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("could not start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(companion_backend::console::cli::main(settings, &args)) {
        Ok(done) => {
            println!("{done}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
