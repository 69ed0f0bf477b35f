//! CSV for spreadsheets: numbers are written as numbers (never quoted,
//! a share as a fraction like 0.8333), text is always quoted, and text that
//! a spreadsheet would read as a formula gets a leading `'`. A lone `-` is
//! text, not a formula, and stays as it is.

/// One cell.
pub enum Cell<'a> {
    Text(&'a str),
    Int(i64),
    Num(f64),
    Empty,
}

pub fn row(cells: &[Cell<'_>]) -> String {
    let mut out = String::new();
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match cell {
            Cell::Text(t) => {
                out.push('"');
                if is_formula(t) {
                    out.push('\'');
                }
                out.push_str(&t.replace('"', "\"\""));
                out.push('"');
            }
            Cell::Int(n) => out.push_str(&n.to_string()),
            Cell::Num(x) if x.is_finite() => out.push_str(&format!("{:.4}", x)),
            Cell::Num(_) | Cell::Empty => {}
        }
    }
    out.push_str("\r\n");
    out
}

fn is_formula(text: &str) -> bool {
    text.len() > 1 && text.starts_with(['=', '+', '-', '@', '\t', '\r'])
        || text.starts_with(['=', '@'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_numbers_and_formulas_are_text() {
        let line = row(&[
            Cell::Text("kus012"),
            Cell::Int(12),
            Cell::Num(0.5),
            Cell::Text("=HYPERLINK(\"x\")"),
            Cell::Text("-"),
            Cell::Text("-1+2"),
            Cell::Empty,
        ]);
        assert_eq!(
            line,
            "\"kus012\",12,0.5000,\"'=HYPERLINK(\"\"x\"\")\",\"-\",\"'-1+2\",\r\n"
        );
    }
}
