use queueserver::IDict;

#[derive(Clone, IDict)]
struct Position(f64, f64);

fn main() {}
