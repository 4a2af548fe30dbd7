//! Where the MongoDB store differs from the obvious code, and why: gaps of the
//! wire-compatible test server (nx-27017 0.8.1) that CI runs against. Each choice is
//! correct on real MongoDB (CloudBase, 4.4+) too; none relies on a gap.
//!
//! 1. Equality on ObjectId-valued fields other than `_id` matches nothing → ids are
//!    stored as 24-digit hex strings (they sort like the ObjectIds they come from).
//! 2. A compound index with `_id` as a component makes later inserts fail → no index
//!    includes `_id`; ties are ordered by `_id` in the sort instead.
//! 3. A BSON date written by `$set` at a field path is stored as a string → timestamps
//!    that change are epoch milliseconds (`*_ms`); write-once dates stay dates. Counter
//!    expiry is compared on `expires_ms`; `expires_at` (a date) only feeds the TTL index.
//! 4. Top-level fields beside a multi-branch `$or` are ignored → [`and_any`] spells the
//!    `$and` out.
//! 5. Update pipelines (`update: [{$set: …}]`) are refused → counters restart after
//!    expiry in plain steps (`MongoStore::increment_counter`), not one `$cond` update.
//! 6. `$setOnInsert` is ignored by upserts, and `listIndexes` shows only `_id_` → nothing
//!    depends on `$setOnInsert`, and index creation is not asserted by a test.
//! 7. TTL indexes never delete → nothing relies on a document being gone; readers check
//!    expiry themselves.
//! 8. `$ne` on a missing field matches in `find` but not in update filters → fields an
//!    update filter tests (`cancel_requested`) are written on insert and compared by
//!    equality.
//! 9. A boolean written by `$set` at a field path reads back as the integer 1 → such
//!    fields are read with [`lenient_bool`].
use mongodb::bson::{doc, Bson, Document};
use serde::{Deserialize, Deserializer};

/// `all` AND (any of `alternatives`), with an explicit `$and` (gap 4).
pub fn and_any(all: Document, alternatives: Vec<Document>) -> Document {
    doc! {"$and": [all, {"$or": alternatives}]}
}

/// A boolean, also when the server hands it back as a number (gap 9).
pub fn lenient_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Ok(bool_of(&Bson::deserialize(deserializer)?))
}

/// A stored boolean read leniently (gap 9): a number counts as its truth value; anything
/// else, or nothing, as false.
pub fn bool_of(value: &Bson) -> bool {
    match value {
        Bson::Boolean(value) => *value,
        Bson::Int32(n) => *n != 0,
        Bson::Int64(n) => *n != 0,
        Bson::Double(n) => *n != 0.0,
        _ => false,
    }
}
