use std::{fmt, str::FromStr};

/// A store's test and prod worlds never mix: keys, activations, sessions and webhooks
/// each belong to exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Test,
    Prod,
}

impl Environment {
    pub const ALL: [Environment; 2] = [Environment::Test, Environment::Prod];

    /// The spelling used in metadata, key prefixes and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Test => "test",
            Environment::Prod => "prod",
        }
    }
}

impl FromStr for Environment {
    type Err = ();

    /// Exactly `test` or `prod`: anything else is rejected, not guessed at.
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "test" => Ok(Environment::Test),
            "prod" => Ok(Environment::Prod),
            _ => Err(()),
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
