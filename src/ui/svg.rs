//! A drawn screen as SVG: every cell's foreground, background and modifiers, one background
//! rectangle per run of equal background and one `<tspan>` per run of equal style, laid on a
//! fixed monospace grid. Used for the README screenshots; pure (a buffer in, text out).

use std::fmt::Write as _;

use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};

use super::theme::Theme;

/// Width of one cell in pixels (0.6 em of the font).
pub const CELL_W: f64 = 9.3;
/// Height of one cell (line) in pixels: the font's ascent plus descent, so block characters
/// (bars, charts) of adjacent lines touch.
pub const CELL_H: f64 = 18.0;
const FONT_SIZE: f64 = 15.4;
/// Baseline below a line's top (the font's ascent).
const BASELINE: f64 = 14.3;
const FONT: &str = "'DejaVu Sans Mono', 'Menlo', 'Consolas', 'Liberation Mono', monospace";

/// What `Color::Reset` stands for: the terminal's own foreground and background.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Palette {
    pub fg: (u8, u8, u8),
    pub bg: (u8, u8, u8),
}

impl Palette {
    /// A dark terminal (light grey on near-black).
    pub const DARK: Palette = Palette {
        fg: (0xd0, 0xd0, 0xd0),
        bg: (0x1a, 0x1b, 0x1e),
    };
    /// A light terminal (near-black on off-white).
    pub const LIGHT: Palette = Palette {
        fg: (0x1c, 0x1c, 0x1c),
        bg: (0xfa, 0xfa, 0xf7),
    };

    /// The terminal a theme is made for: its own colours where it sets them, otherwise a
    /// light terminal when its text colour is dark, a dark one when it is light.
    pub fn for_theme(theme: &Theme) -> Palette {
        let base = match rgb(theme.fg, Palette::DARK, true) {
            (r, g, b) if luminance(r, g, b) < 0.5 => Palette::LIGHT,
            _ => Palette::DARK,
        };
        Palette {
            fg: rgb(theme.fg, base, true),
            bg: rgb(theme.bg, base, false),
        }
    }
}

fn luminance(r: u8, g: u8, b: u8) -> f64 {
    (0.2126 * f64::from(r) + 0.7152 * f64::from(g) + 0.0722 * f64::from(b)) / 255.0
}

/// xterm's default 16 colours.
const ANSI: [(u8, u8, u8); 16] = [
    (0x00, 0x00, 0x00),
    (0xcd, 0x00, 0x00),
    (0x00, 0xcd, 0x00),
    (0xcd, 0xcd, 0x00),
    (0x00, 0x00, 0xee),
    (0xcd, 0x00, 0xcd),
    (0x00, 0xcd, 0xcd),
    (0xe5, 0xe5, 0xe5),
    (0x7f, 0x7f, 0x7f),
    (0xff, 0x00, 0x00),
    (0x00, 0xff, 0x00),
    (0xff, 0xff, 0x00),
    (0x5c, 0x5c, 0xff),
    (0xff, 0x00, 0xff),
    (0x00, 0xff, 0xff),
    (0xff, 0xff, 0xff),
];

/// A cell colour as RGB; `Reset` is the palette's foreground or background.
#[allow(clippy::many_single_char_names)] // r, g, b and the palette read best short
fn rgb(c: Color, p: Palette, fg: bool) -> (u8, u8, u8) {
    match c {
        Color::Reset => {
            if fg {
                p.fg
            } else {
                p.bg
            }
        }
        Color::Black => ANSI[0],
        Color::Red => ANSI[1],
        Color::Green => ANSI[2],
        Color::Yellow => ANSI[3],
        Color::Blue => ANSI[4],
        Color::Magenta => ANSI[5],
        Color::Cyan => ANSI[6],
        Color::Gray => ANSI[7],
        Color::DarkGray => ANSI[8],
        Color::LightRed => ANSI[9],
        Color::LightGreen => ANSI[10],
        Color::LightYellow => ANSI[11],
        Color::LightBlue => ANSI[12],
        Color::LightMagenta => ANSI[13],
        Color::LightCyan => ANSI[14],
        Color::White => ANSI[15],
        Color::Rgb(r, g, b) => (r, g, b),
        Color::Indexed(i) => indexed(i),
    }
}

/// The xterm 256-colour palette.
fn indexed(i: u8) -> (u8, u8, u8) {
    match i {
        0..=15 => ANSI[usize::from(i)],
        16..=231 => {
            let i = i - 16;
            let level = |v: u8| if v == 0 { 0 } else { 55 + 40 * v };
            (level(i / 36), level((i / 6) % 6), level(i % 6))
        }
        _ => {
            let v = 8 + 10 * (i - 232);
            (v, v, v)
        }
    }
}

fn hex((r, g, b): (u8, u8, u8)) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn escape(s: &str, out: &mut String) {
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            // Control characters are not allowed in XML; a terminal would not show them.
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
}

/// The drawn look of one cell: (foreground, background, modifiers that change the text).
type Look = ((u8, u8, u8), (u8, u8, u8), Modifier);

fn look(buf: &Buffer, x: u16, y: u16, p: Palette) -> Look {
    let cell = &buf[(x, y)];
    let mut fg = rgb(cell.fg, p, true);
    let mut bg = rgb(cell.bg, p, false);
    if cell.modifier.contains(Modifier::REVERSED) {
        std::mem::swap(&mut fg, &mut bg);
    }
    let m = cell.modifier
        & (Modifier::BOLD
            | Modifier::DIM
            | Modifier::ITALIC
            | Modifier::UNDERLINED
            | Modifier::CROSSED_OUT);
    (fg, bg, m)
}

/// The screen in `buf` as an SVG document, `Reset` drawn as a dark terminal's colours.
pub fn buffer_to_svg(buf: &Buffer) -> String {
    buffer_to_svg_with(buf, Palette::DARK)
}

/// The screen in `buf` as an SVG document, `Reset` drawn as `p`'s colours.
#[allow(clippy::many_single_char_names)] // x, y, w, h, p, l: grid coordinates and the palette
pub fn buffer_to_svg_with(buf: &Buffer, p: Palette) -> String {
    let area = buf.area;
    let w = f64::from(area.width) * CELL_W;
    let h = f64::from(area.height) * CELL_H;
    let mut out = String::with_capacity(usize::from(area.width) * usize::from(area.height) * 4);
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.1}" height="{h:.1}" viewBox="0 0 {w:.1} {h:.1}" font-family="{FONT}" font-size="{FONT_SIZE}">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="100%" height="100%" fill="{}"/>"#,
        hex(p.bg)
    );
    // Backgrounds: one rectangle per run of equal colour that differs from the terminal's.
    out.push_str("<g shape-rendering=\"crispEdges\">\n");
    for y in area.top()..area.bottom() {
        let mut x = area.left();
        while x < area.right() {
            let bg = look(buf, x, y, p).1;
            let start = x;
            while x < area.right() && look(buf, x, y, p).1 == bg {
                x += 1;
            }
            if bg != p.bg {
                let _ = writeln!(
                    out,
                    r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{CELL_H}" fill="{}"/>"#,
                    f64::from(start - area.left()) * CELL_W,
                    f64::from(y - area.top()) * CELL_H,
                    f64::from(x - start) * CELL_W,
                    hex(bg)
                );
            }
        }
    }
    out.push_str("</g>\n");
    // Text: one <text> per line, one <tspan> per run of equal style, each pinned to its
    // column and stretched to its cell count so glyphs from fallback fonts keep the grid.
    out.push_str("<g xml:space=\"preserve\">\n");
    for y in area.top()..area.bottom() {
        let baseline = f64::from(y - area.top()) * CELL_H + BASELINE;
        let mut line = String::new();
        let mut x = area.left();
        while x < area.right() {
            let l = look(buf, x, y, p);
            let start = x;
            let mut text = String::new();
            let mut cells = 0u16;
            while x < area.right() && look(buf, x, y, p) == l {
                let sym = buf[(x, y)].symbol();
                // The cell after a wide character is empty: the character covers it.
                text.push_str(if sym.is_empty() { "" } else { sym });
                cells += 1;
                x += 1;
            }
            let trimmed = text.trim_end();
            if trimmed.trim_start().is_empty() {
                continue;
            }
            let lead = text.len() - text.trim_start().len();
            let lead_cells = text[..lead].chars().count() as u16;
            let body = trimmed.trim_start();
            let body_cells = cells
                .saturating_sub(lead_cells)
                .saturating_sub((text.len() - trimmed.len()) as u16);
            let (fg, _, m) = l;
            let _ = write!(
                line,
                r#"<tspan x="{:.1}" textLength="{:.1}" fill="{}""#,
                f64::from(start - area.left() + lead_cells) * CELL_W,
                f64::from(body_cells.max(1)) * CELL_W,
                hex(fg)
            );
            if m.contains(Modifier::BOLD) {
                line.push_str(r#" font-weight="bold""#);
            }
            if m.contains(Modifier::ITALIC) {
                line.push_str(r#" font-style="italic""#);
            }
            if m.contains(Modifier::DIM) {
                line.push_str(r#" fill-opacity="0.6""#);
            }
            match (
                m.contains(Modifier::UNDERLINED),
                m.contains(Modifier::CROSSED_OUT),
            ) {
                (true, true) => line.push_str(r#" text-decoration="underline line-through""#),
                (true, false) => line.push_str(r#" text-decoration="underline""#),
                (false, true) => line.push_str(r#" text-decoration="line-through""#),
                (false, false) => {}
            }
            line.push('>');
            escape(body, &mut line);
            line.push_str("</tspan>");
        }
        if !line.is_empty() {
            let _ = writeln!(out, r#"<text y="{baseline:.1}">{line}</text>"#);
        }
    }
    out.push_str("</g>\n</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::layout::Rect;
    use ratatui::style::Style;

    #[test]
    fn runs_of_equal_style_become_one_tspan_with_their_colours() {
        let mut buf = Buffer::empty(Rect::new(0, 0, 12, 2));
        buf.set_string(0, 0, "ok", Style::default().fg(Color::Rgb(0, 200, 0)));
        buf.set_string(
            3,
            0,
            "<db1>",
            Style::default()
                .fg(Color::Red)
                .bg(Color::Rgb(0x30, 0x30, 0x30))
                .add_modifier(Modifier::BOLD),
        );
        buf.set_string(0, 1, "a & b", Style::default());
        let svg = buffer_to_svg(&buf);
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        // 12 × 2 cells.
        assert!(svg.contains(r#"width="111.6" height="36.0""#), "{svg}");
        // "ok" in its green at column 0; "<db1>" bold red at column 3, escaped.
        assert!(
            svg.contains(r##"<tspan x="0.0" textLength="18.6" fill="#00c800">ok</tspan>"##),
            "{svg}"
        );
        assert!(
            svg.contains(
                r##"<tspan x="27.9" textLength="46.5" fill="#cd0000" font-weight="bold">&lt;db1&gt;</tspan>"##
            ),
            "{svg}"
        );
        // Its background is one rectangle of five cells on the first line.
        assert!(
            svg.contains(r##"<rect x="27.9" y="0.0" width="46.5" height="18" fill="#303030"/>"##),
            "{svg}"
        );
        assert_eq!(svg.matches("fill=\"#303030\"").count(), 1);
        // Default colours are the palette's; text is escaped.
        assert!(svg.contains(r##"fill="#1a1b1e""##));
        assert!(svg.contains(">a &amp; b</tspan>"), "{svg}");
    }

    #[test]
    fn reversed_cells_swap_colours_and_light_themes_get_a_light_terminal() {
        let mut buf = Buffer::empty(Rect::new(0, 0, 4, 1));
        buf.set_string(
            0,
            0,
            "sel",
            Style::default()
                .fg(Color::Rgb(1, 2, 3))
                .bg(Color::Rgb(250, 250, 250))
                .add_modifier(Modifier::REVERSED),
        );
        let svg = buffer_to_svg(&buf);
        assert!(svg.contains(r##"fill="#fafafa">sel</tspan>"##), "{svg}");
        assert!(svg.contains(r##"fill="#010203"/>"##), "{svg}");
        let light = Theme::builtin("light").expect("light theme");
        assert_eq!(Palette::for_theme(&light).bg, Palette::LIGHT.bg);
        let dark = Theme::builtin("dark").expect("dark theme");
        assert_eq!(Palette::for_theme(&dark).bg, Palette::DARK.bg);
    }
}
