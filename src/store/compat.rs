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
use mongodb::bson::{doc, Document};

/// `all` AND (any of `alternatives`), with an explicit `$and` (gap 4).
pub fn and_any(all: Document, alternatives: Vec<Document>) -> Document {
    doc! {"$and": [all, {"$or": alternatives}]}
}
