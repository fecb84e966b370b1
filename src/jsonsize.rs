//! Bounding JSON before it is parsed: `serde_json::Value`s take ~30 bytes or more each, however
//! short their text (`1,` is two bytes), so a file of millions of tiny values would take 20
//! times its size in memory. [`check`] counts values and array elements in one pass over the
//! bytes, without allocating but for the nesting stack.

/// Check that `text` has at most `max_values` JSON values (keys counted alike) and, with
/// `max_array`, no array of more elements. Strings and their escapes are skipped; a malformed
/// text is left for the parser to report. Err: the byte offset and what is too many.
pub fn check(text: &[u8], max_values: usize, max_array: Option<usize>) -> Result<(), (usize, String)> {
    // Per open array: where it starts and its elements so far.
    let mut arrays: Vec<(usize, usize)> = Vec::new();
    let mut open = Vec::new(); // b'[' or b'{' per nesting level
    let (mut values, mut prev, mut i) = (0usize, None::<u8>, 0usize);
    while i < text.len() {
        let b = text[i];
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let starts_value =
            !matches!(b, b',' | b':' | b']' | b'}') && matches!(prev, None | Some(b'[' | b'{' | b',' | b':'));
        if starts_value {
            values += 1;
            if values > max_values {
                return Err((i, format!("more than {max_values} values")));
            }
            if let (Some(max), Some(&b'['), Some(a)) = (max_array, open.last(), arrays.last_mut()) {
                a.1 += 1;
                if a.1 > max {
                    return Err((a.0, format!("an array of more than {max} elements")));
                }
            }
        }
        match b {
            b'"' => {
                // Skip to the closing quote.
                i += 1;
                while i < text.len() && text[i] != b'"' {
                    i += if text[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'[' => {
                open.push(b'[');
                arrays.push((i, 0));
            }
            b'{' => open.push(b'{'),
            // Leaving a level: an array's count goes with it.
            b']' | b'}' if open.pop() == Some(b'[') => {
                arrays.pop();
            }
            _ => {}
        }
        prev = Some(b);
        i += 1;
    }
    Ok(())
}

/// `text` parsed as JSON after [`check`] with `max_values` and no array limit; `shown` names
/// the file in errors (FORMAT for too many values or invalid JSON).
pub fn parse(text: &[u8], max_values: usize, shown: &str) -> crate::error::Result<serde_json::Value> {
    use crate::error::Error;
    if let Err((at, msg)) = check(text, max_values, None) {
        return Err(Error::format(format!("{shown}: byte offset {at}: the JSON has {msg}")));
    }
    serde_json::from_slice(text).map_err(|e| Error::format(format!("{shown}: invalid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn values_and_array_elements_are_counted_outside_strings() {
        let t = br#"{"a": [1, 2.5e3, "x,y]", {"b": null}], "c\"[": [true, false]}"#;
        // The root; keys a, b, c; values: the array, 1, 2.5e3, "x,y]", the object, null, the
        // array, true, false.
        assert!(check(t, 13, Some(4)).is_ok());
        assert_eq!(check(t, 12, Some(4)).unwrap_err().1, "more than 12 values");
        assert_eq!(check(t, 13, Some(3)), Err((6, "an array of more than 3 elements".into())));
        assert!(check(b"[]", 1, Some(0)).is_ok());
        assert!(check(b"", 0, None).is_ok());
    }
}
