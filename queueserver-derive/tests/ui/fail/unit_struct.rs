use queueserver::IDict;

#[derive(Clone, IDict)]
struct Nothing;

fn main() {}
