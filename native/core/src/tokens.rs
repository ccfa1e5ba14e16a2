//! Exact BPE token counting (o200k_base, cl100k_base) on the `bpe-openai` crate.

use bpe_openai::Tokenizer;

/// The encodings we count exactly; names as tiktoken spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    O200kBase,
    Cl100kBase,
}

impl Encoding {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "o200k_base" => Some(Self::O200kBase),
            "cl100k_base" => Some(Self::Cl100kBase),
            _ => None,
        }
    }

    pub fn tokenizer(self) -> &'static Tokenizer {
        match self {
            Self::O200kBase => bpe_openai::o200k_base(),
            Self::Cl100kBase => bpe_openai::cl100k_base(),
        }
    }
}

/// Exact token count of `text`, equal to `len(tiktoken.encode_ordinary(text))`.
pub fn count(encoding: Encoding, text: &str) -> usize {
    encoding.tokenizer().count(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_known_strings() {
        assert_eq!(count(Encoding::O200kBase, ""), 0);
        assert_eq!(count(Encoding::O200kBase, "Hello, world!"), 4);
        assert_eq!(count(Encoding::Cl100kBase, "Hello, world!"), 4);
    }
}
