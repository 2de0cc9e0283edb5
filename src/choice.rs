//! Closed sets of named values (`--variant half`, `task = "ctc"` in a recipe):
//! [`choice_enum!`](crate::choice_enum) defines the enum, its names (parsed and printed) and one
//! line of help per value (the variant's doc comment) from one declaration,
//! without the library depending on clap; the CLI turns [`Choice::ALL`] into
//! clap's possible values.

/// An enum whose values have names.
pub trait Choice: Sized + Copy + PartialEq + 'static {
    /// Every value with its name and its help (the variant's doc comment).
    const ALL: &'static [(Self, &'static str, &'static str)];

    fn name(self) -> &'static str {
        Self::ALL.iter().find(|(v, _, _)| *v == self).map(|(_, n, _)| *n).unwrap_or("")
    }

    /// The value of a name, ignoring ASCII case.
    fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n, _)| n.eq_ignore_ascii_case(s.trim())).map(|(v, _, _)| *v)
    }

    /// `a, b, c`, for messages.
    fn names() -> String {
        Self::ALL.iter().map(|(_, n, _)| *n).collect::<Vec<_>>().join(", ")
    }
}

/// An enum with a name per variant: `Variant = "name"`; doc comments on the
/// variants become their help. Implements [`Choice`], `Display` (the name)
/// and `FromStr` (any ASCII case).
#[macro_export]
macro_rules! choice_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[doc = $doc:literal])* $var:ident = $vname:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[doc = $doc])* $var ),+
        }

        impl $crate::choice::Choice for $name {
            const ALL: &'static [(Self, &'static str, &'static str)] = &[ $( ($name::$var, $vname, concat!($($doc),*)) ),+ ];
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str($crate::choice::Choice::name(*self))
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> ::std::result::Result<Self, String> {
                <$name as $crate::choice::Choice>::from_name(s)
                    .ok_or_else(|| format!("'{s}' is not one of {}", <$name as $crate::choice::Choice>::names()))
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::Choice;

    crate::choice_enum! {
        /// A test enum.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Fruit {
            /// A red one,
            /// on two lines.
            Apple = "apple",
            PassionFruit = "passion+fruit",
        }
    }

    #[test]
    fn names_round_trip_and_help_is_the_doc_comment() {
        for &(v, n, _) in Fruit::ALL {
            assert_eq!(v.to_string(), n);
            assert_eq!(n.parse::<Fruit>(), Ok(v));
        }
        assert_eq!("APPLE".parse::<Fruit>(), Ok(Fruit::Apple));
        assert_eq!("pear".parse::<Fruit>().unwrap_err(), "'pear' is not one of apple, passion+fruit");
        assert_eq!(Fruit::ALL[0].2, " A red one, on two lines.");
        assert_eq!(Fruit::ALL[1].2, "");
    }
}
