use queueserver::IDict;

#[derive(Clone, IDict)]
struct Motor {
    #[idict(rename = "speed/*")]
    speed: f64,
    #[idict(rename = "@snapshot")]
    current: f64,
    #[idict(rename = "motor//torque")]
    torque: f64,
    #[idict(rename = "")]
    faults: u32,
}

fn main() {}
