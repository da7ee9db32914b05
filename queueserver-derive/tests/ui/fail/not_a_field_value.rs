use queueserver::IDict;

#[derive(Clone, IDict)]
struct Log {
    count: u32,
    lines: Vec<String>,
}

fn main() {}
