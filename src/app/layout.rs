//! Where things are on screen, as pure functions of the state and the terminal size: the
//! renderer draws into these areas and `update` hit-tests mouse clicks against the same ones,
//! so neither depends on the other.

use ratatui::layout::Rect;

use super::state::{App, View};

/// The area the dashboard body gets on a screen of `size` (for mouse hit-testing).
pub fn body_area(app: &App, size: (u16, u16)) -> Rect {
    let banner = u16::from(!app.suggestions.is_empty() && app.view == View::Dashboard);
    Rect::new(0, 1 + banner, size.0, size.1.saturating_sub(2 + banner))
}

/// One drawn line of the stack map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    /// Tier `t` of `app.stack`.
    Tier(usize),
    /// Host `h` of tier `t`.
    Host(usize, usize),
}

/// The stack map's rows, tiers in traffic order.
pub fn rows(app: &App) -> Vec<Row> {
    let mut out = Vec::new();
    for (t, tier) in app.stack.iter().enumerate() {
        out.push(Row::Tier(t));
        for h in 0..tier.hosts.len() {
            out.push(Row::Host(t, h));
        }
    }
    out
}

/// How the body splits: (map, feed), and the first map row shown.
pub fn split(app: &App, area: Rect) -> (Rect, Rect, usize) {
    let rows = rows(app);
    let need = rows.len().max(1);
    let h = usize::from(area.height);
    // The feed keeps at least a quarter of the screen (and 4 lines) when the map is long.
    let feed_min = (h / 4).max(4).min(h.saturating_sub(3));
    let map_h = need.min(h.saturating_sub(feed_min)).max(usize::from(h > 0));
    let map = Rect::new(area.x, area.y, area.width, map_h as u16);
    let feed = Rect::new(
        area.x,
        area.y + map_h as u16,
        area.width,
        (h - map_h) as u16,
    );
    let selected = rows
        .iter()
        .position(|r| matches!(r, Row::Host(t, i) if app.stack[*t].hosts[*i].index == app.dashboard.selected))
        .unwrap_or(0);
    // Keep the selected host and, where possible, its tier heading in view.
    let offset = if selected < map_h {
        0
    } else {
        (selected + 1 - map_h).min(rows.len().saturating_sub(map_h))
    };
    (map, feed, offset)
}

/// Where each visible host row is: (host index, x, y, width), for mouse hit-testing.
pub fn host_boxes(app: &App, area: Rect) -> Vec<(usize, u16, u16, u16)> {
    let (map, _, offset) = split(app, area);
    rows(app)
        .iter()
        .skip(offset)
        .take(usize::from(map.height))
        .enumerate()
        .filter_map(|(y, r)| match r {
            Row::Host(t, i) => Some((
                app.stack[*t].hosts[*i].index,
                map.x,
                map.y + y as u16,
                map.width,
            )),
            Row::Tier(_) => None,
        })
        .collect()
}
