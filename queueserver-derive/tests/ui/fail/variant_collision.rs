use queueserver::IDict;

#[derive(Clone, IDict)]
struct Motor {
    speed: f64,
    speed_: f64,
}

fn main() {}
