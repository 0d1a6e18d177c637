//! Builds the test image (if its sources changed) and prints its name, for scripts such as
//! the end-to-end walkthroughs and benchmarks that need it outside of `cargo test`.

fn main() {
    let image = testkit::images::simplehttp_image();
    #[allow(clippy::print_stdout)]
    {
        println!("{image}");
    }
}
