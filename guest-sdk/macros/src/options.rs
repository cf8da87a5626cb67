//! Parsing the options of `#[fabric::remote(..)]` and `#[fabric::actor(..)]`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::parse::Parser;

/// Declared options, as builder calls on `TaskOptions`/`ActorOptions`.
#[derive(Default)]
pub struct Declared {
    pub calls: Vec<TokenStream>,
    /// `name = "..."`: the registered name (remote functions only).
    pub name: Option<syn::LitStr>,
    /// `num_returns = n`: the function returns several values, each its
    /// own object (remote functions only).
    pub num_returns: bool,
}

/// Parses `key = value` options; `allowed` lists the keys accepted here.
pub fn parse(attr: TokenStream, allowed: &[&str]) -> syn::Result<Declared> {
    let mut d = Declared::default();
    let parser = syn::meta::parser(|meta| {
        let key = meta
            .path
            .get_ident()
            .map(|i| i.to_string())
            .ok_or_else(|| meta.error("expected an option name"))?;
        if !allowed.contains(&key.as_str()) {
            return Err(meta.error(format!(
                "unknown option `{key}`; expected one of: {}",
                allowed.join(", ")
            )));
        }
        match key.as_str() {
            "num_cpus" | "num_gpus" => {
                let v: syn::Expr = meta.value()?.parse()?;
                let m = syn::Ident::new(&key, meta.path.span());
                d.calls.push(quote!(.#m((#v) as f64)));
            }
            "memory" => {
                let v: syn::Expr = meta.value()?.parse()?;
                d.calls.push(quote!(.memory((#v) as u64)));
            }
            "num_returns" => {
                let v: syn::Expr = meta.value()?.parse()?;
                d.calls.push(quote!(.num_returns((#v) as u32)));
                d.num_returns = true;
            }
            "backpressure" => {
                let v: syn::Expr = meta.value()?.parse()?;
                d.calls.push(quote!(.backpressure((#v) as u32)));
            }
            "max_retries" => {
                let v: syn::Expr = meta.value()?.parse()?;
                d.calls.push(quote!(.max_retries((#v) as u32)));
            }
            "max_restarts" => {
                let v: syn::Expr = meta.value()?.parse()?;
                d.calls.push(quote!(.max_restarts((#v) as u32)));
            }
            "max_task_retries" => {
                let v: syn::Expr = meta.value()?.parse()?;
                d.calls.push(quote!(.max_task_retries((#v) as u32)));
            }
            "max_concurrency" => {
                let v: syn::Expr = meta.value()?.parse()?;
                d.calls.push(quote!(.max_concurrency((#v) as u32)));
            }
            "retry_exceptions" => {
                let v: syn::Expr = meta.value()?.parse()?;
                d.calls.push(quote!(.retry_exceptions(#v)));
            }
            "resources" => {
                meta.parse_nested_meta(|inner| {
                    let name = inner
                        .path
                        .get_ident()
                        .map(|i| i.to_string())
                        .ok_or_else(|| inner.error("expected a resource name"))?;
                    let v: syn::Expr = inner.value()?.parse()?;
                    d.calls.push(quote!(.resource(#name, (#v) as f64)));
                    Ok(())
                })?;
            }
            "name" => {
                d.name = Some(meta.value()?.parse()?);
            }
            _ => unreachable!("checked against `allowed`"),
        }
        Ok(())
    });
    parser.parse2(attr)?;
    Ok(d)
}

use syn::spanned::Spanned as _;
