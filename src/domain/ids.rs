use std::fmt;

use mongodb::bson::oid::ObjectId;
use serde::{Deserialize, Serialize};

macro_rules! object_id_newtype {
    ($name:ident) => {
        /// An ObjectId: time-ordered, so sorting by id is sorting by creation.
        /// Serialized as its 24-digit hex string.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(ObjectId);

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                Self::parse(&raw).ok_or_else(|| serde::de::Error::custom("not a 24-digit hex id"))
            }
        }

        impl $name {
            pub fn new() -> Self {
                Self(ObjectId::new())
            }
            /// `None` for anything that is not a 24-digit hex id (the caller answers 404).
            pub fn parse(s: &str) -> Option<Self> {
                ObjectId::parse_str(s).ok().map(Self)
            }
            pub fn as_object_id(&self) -> ObjectId {
                self.0
            }
            pub fn from_object_id(id: ObjectId) -> Self {
                Self(id)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0.to_hex())
            }
        }
    };
}

object_id_newtype!(UserId);
object_id_newtype!(ConversationId);
object_id_newtype!(MessageId);
object_id_newtype!(MemoryId);
