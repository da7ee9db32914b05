use queueserver::IDict;

#[derive(Clone, IDict)]
struct Motor {
    größe: f64,
}

fn main() {}
