//! `#[fabric::remote]` on a function.

use proc_macro2::TokenStream;
use quote::quote;

use crate::options;
use crate::signature::{
    caller_params, decode_params, encode_params, generator_item, generator_static, params, returns,
};

const OPTIONS: &[&str] = &[
    "num_cpus",
    "num_gpus",
    "memory",
    "resources",
    "max_retries",
    "retry_exceptions",
    "name",
    "num_returns",
    "backpressure",
];

pub fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let declared = options::parse(attr, OPTIONS)?;
    let mut f: syn::ItemFn = syn::parse2(item)?;
    generator_static(&mut f.sig);
    let sig = &f.sig;
    check_signature(sig)?;
    let ident = &sig.ident;
    let vis = &f.vis;
    let name = declared
        .name
        .map(|l| l.value())
        .unwrap_or_else(|| ident.to_string());
    let ps = params(sig, None)?;
    let ret = returns(sig, None);
    let value_ty = &ret.value;
    let caller = caller_params(&ps);
    let arg_names: Vec<_> = ps.iter().map(|p| &p.ident).collect();
    let encode = encode_params(&ps);
    let decode = decode_params(&ps);
    let (refs_ty, submit, each) = returned(declared.num_returns, value_ty);
    let item = generator_item(value_ty);
    if item.is_some() && declared.num_returns {
        return Err(syn::Error::new_spanned(
            &sig.output,
            "a generator streams its items: it takes no num_returns",
        ));
    }
    let (refs_ty, submit, encode_ret) = match &item {
        Some(t) => (
            quote!(::fabric::ObjectStream<#t>),
            quote!(::fabric::__rt::submit_stream),
            generator_ret(ret.fallible),
        ),
        None if ret.fallible => (
            refs_ty,
            submit,
            quote!(::fabric::__ret_result!(__out, #each)),
        ),
        None => (refs_ty, submit, quote!(#each(__out))),
    };
    let calls = &declared.calls;
    let doc = format!("Remote calls of [`{ident}`](fn@{ident}), registered as `{name}`.");

    Ok(quote! {
        #f

        #[doc = #doc]
        #[allow(non_snake_case, dead_code, private_interfaces, clippy::all)]
        #vis mod #ident {
            #[allow(unused_imports)]
            use super::*;

            /// The name this function is registered under.
            pub const NAME: &str = #name;

            /// The options declared on the function.
            pub fn declared_options() -> ::fabric::TaskOptions {
                ::fabric::TaskOptions::new() #(#calls)*
            }

            /// Submits a call as a task; returns a reference to its result
            /// (with `num_returns`, one to each of its values).
            pub fn remote(#caller) -> ::fabric::Result<#refs_ty> {
                self::options(::fabric::TaskOptions::new()).remote(#(#arg_names),*)
            }

            /// A call with `options` overriding the declared ones.
            pub fn options(options: ::fabric::TaskOptions) -> Call {
                Call { options: self::declared_options().merge(options) }
            }

            /// A call with its options decided; `.remote(..)` submits it.
            pub struct Call {
                options: ::fabric::TaskOptions,
            }

            impl Call {
                /// Submits the call as a task.
                pub fn remote(self, #caller) -> ::fabric::Result<#refs_ty> {
                    #encode
                    #submit(self::NAME, __args, &self.options)
                }
            }

            fn __dispatch(__args: ::std::vec::Vec<::std::vec::Vec<u8>>)
                -> ::std::result::Result<::fabric::__rt::Returned, ::fabric::__rt::CallError>
            {
                #decode
                let __out = super::#ident(#(#arg_names),*);
                #encode_ret
            }

            ::fabric::__rt::inventory::submit! {
                ::fabric::__rt::RemoteFn { name: self::NAME, call: self::__dispatch }
            }
        }
    })
}

/// How generated code hands out a generator's items and ends its call:
/// the generator's own error (an `Err` item, or the function's `Err`) as a
/// typed application error.
pub fn generator_ret(fallible: bool) -> TokenStream {
    let drained = quote! {
        let __drained = ::fabric::__rt::drain(__g)?;
        ::fabric::__ret_result!(__drained, ::fabric::__rt::ret_value)
    };
    if fallible {
        quote! {
            match __out {
                ::std::result::Result::Ok(__g) => { #drained }
                ::std::result::Result::Err(__e) => ::fabric::__ret_result!(
                    ::std::result::Result::<(), _>::Err(__e),
                    ::fabric::__rt::ret_value
                ),
            }
        }
    } else {
        quote! {
            let __g = __out;
            #drained
        }
    }
}

/// Refuses what a remote function cannot be.
fn check_signature(sig: &syn::Signature) -> syn::Result<()> {
    if let Some(a) = &sig.asyncness {
        return Err(syn::Error::new_spanned(
            a,
            "remote functions cannot be async",
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &sig.generics,
            "remote functions cannot be generic",
        ));
    }
    if let Some(syn::FnArg::Receiver(r)) = sig.inputs.first() {
        return Err(syn::Error::new_spanned(
            r,
            "use #[fabric::actor] for methods",
        ));
    }
    Ok(())
}

/// What the caller gets, how it submits, and how the function's value is
/// encoded. With `num_returns`, each value is its own object: the caller
/// gets the references `Returns::Refs` names, the values are encoded one
/// by one.
fn returned(num_returns: bool, value_ty: &syn::Type) -> (TokenStream, TokenStream, TokenStream) {
    if num_returns {
        (
            quote!(<#value_ty as ::fabric::Returns>::Refs),
            quote!(::fabric::__rt::submit_each::<#value_ty>),
            quote!(::fabric::__rt::ret_each),
        )
    } else {
        (
            quote!(::fabric::ObjectRef<#value_ty>),
            quote!(::fabric::__rt::submit),
            quote!(::fabric::__rt::ret_value),
        )
    }
}
