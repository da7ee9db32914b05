use queueserver::IDict;

#[derive(Clone, IDict)]
#[idict(rename_all = "camelCase")]
struct Motor {
    #[idict(flatten)]
    speed: f64,
}

#[derive(Clone, IDict)]
struct Pump {
    #[idict(rename = "flow", rename = "rate")]
    flow: f64,
    #[idict(rename = 3)]
    head: f64,
}

fn main() {}
