use queueserver::IDict;

#[derive(Clone, IDict)]
enum Mode {
    Idle,
    Running { speed: f64 },
}

fn main() {}
