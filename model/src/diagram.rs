//! Sequence diagrams for the explorer: a lifeline per actor that takes part, a row per step,
//! an arrow from the step that sent a message to the step that delivered it. Used for the
//! model checker's paths and for replayed real runs alike.

use crate::{ModelAction, ModelState};
use smr::{Msg, Node};
use stateright::actor::{ActorModelAction, Id};
use stateright::Path;
use std::fmt::Write;

/// One replayed step, as the model's action.
#[derive(Clone, Debug)]
pub struct Step {
    /// The step's place in conform's replayed order (stutters and crashes count).
    pub number: u64,
    pub action: ModelAction,
    /// For a delivery: the number of the step that sent the message (first).
    pub sent_at: Option<u64>,
}

/// Steps the sequence diagram shows: the latest ones up to the state shown.
pub const DIAGRAM_STEPS: usize = 40;

/// A sequence diagram of `steps`: a lifeline per actor that takes part, a row per step, an
/// arrow from the row that sent a message to the row that delivered it (from the top edge
/// when the send is above the diagram).
pub fn of_steps(actors: &[Node], steps: &[Step]) -> String {
    const LEFT: usize = 70;
    const COLUMN: usize = 110;
    const TOP: usize = 50;
    const ROW: usize = 26;
    let mut ids: Vec<usize> = steps
        .iter()
        .flat_map(|step| match &step.action {
            ModelAction::Actor(ActorModelAction::Deliver { src, dst, .. }) => {
                vec![usize::from(*src), usize::from(*dst)]
            }
            ModelAction::Actor(
                ActorModelAction::Timeout(id, _)
                | ActorModelAction::Crash(id)
                | ActorModelAction::Recover(id),
            )
            | ModelAction::LoseStorage(id) => vec![usize::from(*id)],
            ModelAction::Actor(ActorModelAction::SelectRandom { actor, .. }) => {
                vec![usize::from(*actor)]
            }
            ModelAction::Actor(ActorModelAction::Drop(envelope)) => {
                vec![usize::from(envelope.dst)]
            }
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let x = |id: usize| LEFT + COLUMN * ids.iter().position(|i| *i == id).unwrap_or(0);
    let y = |row: usize| TOP + ROW * (row + 1);
    let width = LEFT + COLUMN * ids.len() + 160;
    let height = y(steps.len()) + ROW;
    let mut svg = format!(
        "<svg version='1.1' baseProfile='full' width='{width}' height='{height}' viewbox='-10 -10 {} {}' xmlns='http://www.w3.org/2000/svg'>\
         <defs><marker class='svg-event-shape' id='arrow' markerWidth='12' markerHeight='10' refX='12' refY='5' orient='auto'><polygon points='0 0, 12 5, 0 10' /></marker></defs>",
        width + 20,
        height + 20
    );
    for id in &ids {
        let name = match actors.get(*id) {
            Some(Node::Replica(_)) => format!("replica {id}"),
            _ => format!("client {id}"),
        };
        let _ = write!(
            svg,
            "<line x1='{0}' y1='{1}' x2='{0}' y2='{height}' class='svg-actor-timeline' />\
             <text x='{0}' y='{2}' class='svg-actor-label'>{name}</text>",
            x(*id),
            TOP,
            TOP - 10
        );
    }
    let rows: std::collections::HashMap<u64, usize> = steps
        .iter()
        .enumerate()
        .map(|(row, step)| (step.number, row))
        .collect();
    for (row, step) in steps.iter().enumerate() {
        let _ = write!(
            svg,
            "<text x='0' y='{}' class='svg-event-label'>#{}</text>",
            y(row) + 4,
            step.number
        );
        let (at, label) = match &step.action {
            ModelAction::Actor(ActorModelAction::Deliver { src, dst, msg }) => {
                let from_y = step
                    .sent_at
                    .and_then(|sent| rows.get(&sent))
                    .map_or(TOP, |sent_row| y(*sent_row));
                let _ = write!(
                    svg,
                    "<line x1='{}' y1='{from_y}' x2='{}' y2='{}' marker-end='url(#arrow)' class='svg-event-line' />",
                    x(usize::from(*src)),
                    x(usize::from(*dst)),
                    y(row)
                );
                (usize::from(*dst), kind(msg))
            }
            ModelAction::Actor(ActorModelAction::Timeout(id, timer)) => {
                (usize::from(*id), format!("{timer:?} timeout"))
            }
            ModelAction::Actor(ActorModelAction::Crash(id)) => {
                (usize::from(*id), "crash".to_string())
            }
            ModelAction::Actor(ActorModelAction::Recover(id)) => {
                (usize::from(*id), "start".to_string())
            }
            ModelAction::LoseStorage(id) => (usize::from(*id), "storage lost".to_string()),
            ModelAction::Actor(ActorModelAction::SelectRandom { actor, .. }) => {
                (usize::from(*actor), "random choice".to_string())
            }
            ModelAction::Actor(ActorModelAction::Drop(envelope)) => {
                (usize::from(envelope.dst), "drop".to_string())
            }
        };
        let _ = write!(
            svg,
            "<circle cx='{0}' cy='{1}' r='4' class='svg-event-shape' />\
             <text x='{2}' y='{3}' class='svg-event-label'>{label}</text>",
            x(at),
            y(row),
            x(at) + 8,
            y(row) + 4
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A message's kind, for the diagram: its variant's name.
fn kind(msg: &Msg) -> String {
    let text = format!("{msg:?}");
    text.chars().take_while(|c| c.is_alphanumeric()).collect()
}

/// The diagram of the latest [`DIAGRAM_STEPS`] steps of a model checker's path. A delivery's
/// arrow starts at the latest earlier step after which the message was in the network and
/// before which it was not.
pub fn of_path(actors: &[Node], path: Path<ModelState, ModelAction>) -> String {
    let pairs = path.into_vec();
    let in_network = |state: &ModelState, src: Id, dst: Id, msg: &Msg| {
        state
            .network
            .iter_deliverable()
            .any(|e| e.src == src && e.dst == dst && e.msg == msg)
    };
    let mut steps = Vec::new();
    for (index, (_, action)) in pairs.iter().enumerate() {
        let Some(action) = action else { continue };
        let sent_at = match action {
            ModelAction::Actor(ActorModelAction::Deliver { src, dst, msg }) => (0..index)
                .rev()
                .find(|j| {
                    in_network(&pairs[j + 1].0, *src, *dst, msg)
                        && !in_network(&pairs[*j].0, *src, *dst, msg)
                })
                .map(|j| j as u64 + 1),
            _ => None,
        };
        steps.push(Step {
            number: index as u64 + 1,
            action: action.clone(),
            sent_at,
        });
    }
    let from = steps.len().saturating_sub(DIAGRAM_STEPS);
    of_steps(actors, &steps[from..])
}
