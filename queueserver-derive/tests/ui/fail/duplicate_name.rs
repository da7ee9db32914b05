use queueserver::IDict;

#[derive(Clone, IDict)]
struct Motor {
    speed: f64,
    #[idict(rename = "speed")]
    target_speed: f64,
}

fn main() {}
