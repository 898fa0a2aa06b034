//! Network namespace names, as `ip netns` gives them: a file name in
//! `/run/netns`. guard makes paths of them (`/run/guard/netns/NAME`, the
//! pins' `/sys/fs/bpf/guard/netns/NAME`), so a name that is not one file
//! name would put its files elsewhere.

/// Why `name` cannot name a namespace, if it cannot (iproute2's rule).
#[must_use]
pub fn netns_name_error(name: &str) -> Option<&'static str> {
    // NAME_MAX: the longest file name.
    const NAME_MAX: usize = 255;
    if name.is_empty() {
        Some("a namespace name cannot be empty")
    } else if name == "." || name == ".." {
        Some("`.` and `..` name no namespace")
    } else if name.contains('/') {
        Some("a namespace name is a file name in /run/netns: it cannot contain `/`")
    } else if name.contains('\0') {
        Some("a namespace name cannot contain a NUL byte")
    } else if name.len() > NAME_MAX {
        Some("a namespace name is a file name: at most 255 bytes")
    } else {
        None
    }
}

/// `--netns` as clap parses it.
pub fn parse_netns(name: &str) -> Result<String, String> {
    netns_name_error(name).map_or_else(|| Ok(name.to_owned()), |why| Err(why.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_ip_netns_would_refuse_are_refused() {
        for bad in ["", ".", "..", "../x", "a/b", "/run/netns/x", "a\0b"] {
            assert!(netns_name_error(bad).is_some(), "{bad:?}");
        }
        assert!(netns_name_error(&"n".repeat(256)).is_some());
        for good in ["edge", "a b", "web-1", ".hidden", "x..y", &"n".repeat(255)] {
            assert_eq!(netns_name_error(good), None, "{good:?}");
        }
        assert_eq!(
            parse_netns("../etc").unwrap_err(),
            "a namespace name is a file name in /run/netns: it cannot contain `/`"
        );
    }
}
