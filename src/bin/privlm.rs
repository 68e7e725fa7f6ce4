//! `privlm`: the demo and utility command line.

fn main() {
    let cmd = std::env::args().nth(1).unwrap_or_else(|| "demo".into());
    match cmd.as_str() {
        "demo" => {
            println!("privlm demo: the private-inference demo is not yet available.");
            println!("It lands with the end-to-end issue (client, server and dealer over TLS).");
        }
        other => {
            eprintln!("unknown command {other:?}; available: demo");
            std::process::exit(2);
        }
    }
}
