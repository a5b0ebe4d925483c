fn main() { println!("resetdesk-app: desktop shell not built yet"); }
