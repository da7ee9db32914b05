use queueserver::IDict;

#[derive(Clone, IDict)]
struct Motor {
    speed: f64,
    #[idict(skip, rename = "raw")]
    raw: [u8; 4],
}

#[derive(Clone, IDict)]
struct Hidden {
    #[idict(skip)]
    only: f64,
}

fn main() {}
