//! A small, strict XML reader for STS's `GetCallerIdentity` answer:
//! elements, attributes (ignored), text and the five predefined entities.
//! Anything else (DOCTYPE and so entity definitions, comments, CDATA,
//! processing instructions after the prolog, namespace prefixes, mixed
//! content, unbalanced tags, trailing bytes) is refused. Depth and size are
//! bounded.

/// Deepest element nesting accepted.
const MAX_DEPTH: usize = 16;

/// An element: its name, child elements and text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub name: String,
    pub children: Vec<Element>,
    /// The decoded text of a leaf element (empty when it has children).
    pub text: String,
}

impl Element {
    /// The children named `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }
}

/// Parses a document with one root element.
pub fn parse(text: &str) -> Result<Element, String> {
    let mut r = Reader { s: text, pos: 0 };
    r.skip_ws();
    if r.rest().starts_with("<?xml") {
        let end = r
            .rest()
            .find("?>")
            .ok_or_else(|| "unterminated XML declaration".to_string())?;
        r.pos += end + 2;
        r.skip_ws();
    }
    let root = r.element(0)?;
    r.skip_ws();
    if r.pos != text.len() {
        return Err(format!(
            "unexpected content after the root element at byte {}",
            r.pos
        ));
    }
    Ok(root)
}

struct Reader<'a> {
    s: &'a str,
    pos: usize,
}

impl Reader<'_> {
    fn rest(&self) -> &str {
        self.s.get(self.pos..).unwrap_or_default()
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start_matches([' ', '\t', '\r', '\n']).len();
    }

    fn expect(&mut self, token: &str) -> Result<(), String> {
        if self.rest().starts_with(token) {
            self.pos += token.len();
            Ok(())
        } else {
            Err(format!("expected `{token}` at byte {}", self.pos))
        }
    }

    fn name(&mut self) -> Result<String, String> {
        let rest = self.rest();
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
            .unwrap_or(rest.len());
        let name = rest[..len].to_string();
        if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            return Err(format!("expected a name at byte {}", self.pos));
        }
        self.pos += len;
        Ok(name)
    }

    /// `<name attr="v" ...>content</name>` or `<name .../>`.
    fn element(&mut self, depth: usize) -> Result<Element, String> {
        if depth >= MAX_DEPTH {
            return Err(format!("elements nested deeper than {MAX_DEPTH}"));
        }
        self.expect("<")?;
        let name = self.name()?;
        loop {
            let before = self.pos;
            self.skip_ws();
            if self.rest().starts_with("/>") {
                self.pos += 2;
                return Ok(Element {
                    name,
                    ..Element::default()
                });
            }
            if self.rest().starts_with('>') {
                self.pos += 1;
                break;
            }
            if self.pos == before {
                return Err(format!(
                    "expected whitespace, `>` or `/>` at byte {}",
                    self.pos
                ));
            }
            self.attribute()?;
        }
        let mut element = Element {
            name,
            ..Element::default()
        };
        let mut text = String::new();
        loop {
            let rest = self.rest();
            if rest.is_empty() {
                return Err(format!("element `{}` is not closed", element.name));
            }
            if rest.starts_with("</") {
                self.pos += 2;
                let end = self.name()?;
                if end != element.name {
                    return Err(format!(
                        "`</{end}>` closes `<{}>` at byte {}",
                        element.name, self.pos
                    ));
                }
                self.skip_ws();
                self.expect(">")?;
                break;
            }
            if rest.starts_with("<!") || rest.starts_with("<?") {
                return Err(format!(
                    "comments, CDATA, DOCTYPE and processing instructions are not accepted (byte {})",
                    self.pos
                ));
            }
            if rest.starts_with('<') {
                element.children.push(self.element(depth + 1)?);
                continue;
            }
            let len = rest.find('<').unwrap_or(rest.len());
            text.push_str(&decode(&rest[..len])?);
            self.pos += len;
        }
        if element.children.is_empty() {
            element.text = text;
        } else if !text.trim_matches([' ', '\t', '\r', '\n']).is_empty() {
            return Err(format!(
                "element `{}` mixes text and elements",
                element.name
            ));
        }
        Ok(element)
    }

    /// `name="value"` or `name='value'`; the value is not kept.
    fn attribute(&mut self) -> Result<(), String> {
        self.name()?;
        self.skip_ws();
        self.expect("=")?;
        self.skip_ws();
        let quote = match self.rest().chars().next() {
            Some(q @ ('"' | '\'')) => q,
            _ => {
                return Err(format!(
                    "expected a quoted attribute value at byte {}",
                    self.pos
                ));
            }
        };
        self.pos += 1;
        let rest = self.rest();
        let len = rest
            .find(quote)
            .ok_or_else(|| "unterminated attribute value".to_string())?;
        if rest[..len].contains('<') {
            return Err(format!("`<` in an attribute value at byte {}", self.pos));
        }
        decode(&rest[..len])?;
        self.pos += len + 1;
        Ok(())
    }
}

/// Decodes the five predefined entities; refuses any other `&`.
fn decode(raw: &str) -> Result<String, String> {
    if raw.contains("]]>") {
        return Err("`]]>` in text".to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let (entity, c) = [
            ("&amp;", '&'),
            ("&lt;", '<'),
            ("&gt;", '>'),
            ("&quot;", '"'),
            ("&apos;", '\''),
        ]
        .into_iter()
        .find(|(e, _)| after.starts_with(e))
        .ok_or_else(|| {
            "only the predefined entities (&amp; &lt; &gt; &quot; &apos;) are accepted".to_string()
        })?;
        out.push(c);
        rest = &after[entity.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_elements_text_and_entities() {
        let doc = parse(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<A xmlns=\"https://x/\" b='1'>\n  <B>x &amp; y&lt;</B>\n  <C/><C ></C>\n</A >\n",
        )
        .unwrap();
        assert_eq!(doc.name, "A");
        assert_eq!(doc.children.len(), 3);
        assert_eq!(doc.children[0].text, "x & y<");
        assert_eq!(doc.children_named("C").count(), 2);
        assert_eq!(doc.text, "");
    }

    #[test]
    fn refuses_everything_else() {
        let deep = format!("{}{}", "<a>".repeat(20), "</a>".repeat(20));
        for (doc, needle) in [
            (
                "<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>",
                "expected a name",
            ),
            ("<a><!DOCTYPE a></a>", "DOCTYPE"),
            ("<a><!-- c --></a>", "comments"),
            ("<a><![CDATA[x]]></a>", "CDATA"),
            ("<a><?pi x?></a>", "processing instructions"),
            ("<a>&x;</a>", "predefined entities"),
            ("<a>&#65;</a>", "predefined entities"),
            ("<a><b></a></b>", "closes"),
            ("<a><b></b>", "not closed"),
            ("<a></a><a></a>", "after the root element"),
            ("<a></a>x", "after the root element"),
            ("<a>x<b/></a>", "mixes text and elements"),
            ("<x:a></x:a>", "expected whitespace"),
            ("<a b></a>", "expected `=`"),
            ("<a b=c></a>", "quoted attribute"),
            ("<a b=\"<\"></a>", "`<` in an attribute"),
            ("<a b=\"x></a>", "unterminated attribute"),
            ("<?xml version=\"1.0\"", "unterminated XML declaration"),
            ("", "expected `<`"),
            (deep.as_str(), "nested deeper than 16"),
        ] {
            let e = parse(doc).unwrap_err();
            assert!(e.contains(needle), "{doc}: {e}");
        }
    }
}
