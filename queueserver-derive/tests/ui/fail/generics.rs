use queueserver::IDict;

#[derive(Clone, IDict)]
struct Channel<T> {
    value: T,
}

fn main() {}
