//! Generates the route table (`$OUT_DIR/routes.rs`, read by `src/route_table.rs`): the method and
//! full path pattern of every handler declared with actix's route attributes (`#[get("/…")]`…)
//! anywhere under `src/`, so a route added later is in the table without a further step. Routes
//! in `src/routes/` are under the `/api` scope (`routes::configure`); the others are at the root.

use std::{
    fs,
    path::{Path, PathBuf},
};

use syn::punctuated::Punctuated;

/// The single-method route attributes of actix-web.
const METHODS: &[&str] = &["get", "post", "put", "patch", "delete", "head", "options", "trace", "connect"];

fn main() {
    println!("cargo::rerun-if-changed=src");
    let mut routes = Vec::new();
    collect(Path::new("src"), &mut routes);
    routes.sort();
    routes.dedup();
    let entries: String = routes.iter().map(|(method, path)| format!("    ({method:?}, {path:?}),\n")).collect();
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("routes.rs");
    fs::write(out, format!("&[\n{entries}]\n")).expect("write the route table");
}

/// Adds the routes declared in the Rust files under `dir`.
fn collect(dir: &Path, routes: &mut Vec<(String, String)>) {
    let mut entries: Vec<PathBuf> =
        fs::read_dir(dir).expect("read src").map(|entry| entry.expect("directory entry").path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, routes);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            // A file that does not parse fails the crate's own build with a better message.
            let Ok(file) = syn::parse_file(&fs::read_to_string(&path).expect("read a source file")) else {
                continue;
            };
            let scope = if path.starts_with("src/routes") { "/api" } else { "" };
            items(&file.items, scope, routes);
        }
    }
}

/// Adds the routes of `items` and of the inline modules among them.
fn items(items: &[syn::Item], scope: &str, routes: &mut Vec<(String, String)>) {
    for item in items {
        match item {
            syn::Item::Fn(function) => {
                for attr in &function.attrs {
                    let Some(name) = attr.path().segments.last().map(|s| s.ident.to_string()) else { continue };
                    assert!(
                        name != "route" && name != "routes",
                        "{}: the route table reads one-method attributes (#[get], #[post], …) only",
                        function.sig.ident
                    );
                    if METHODS.contains(&name.as_str()) {
                        let args = attr
                            .parse_args_with(Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated)
                            .expect("route attribute arguments");
                        let Some(syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(path), .. })) = args.first() else {
                            panic!("{}: a route attribute starts with its path", function.sig.ident);
                        };
                        routes.push((name.to_uppercase(), format!("{scope}{}", path.value())));
                    }
                }
            }
            syn::Item::Mod(module) => {
                if let Some((_, inner)) = &module.content {
                    self::items(inner, scope, routes);
                }
            }
            _ => {}
        }
    }
}
