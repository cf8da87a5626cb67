//! Reading a function signature: its parameters and what it returns.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::visit_mut::VisitMut;

/// One parameter of a remote function or method.
pub struct Param {
    /// A name for it in generated code.
    pub ident: syn::Ident,
    pub ty: syn::Type,
}

/// The parameters of `sig`, skipping the receiver. Rejects parameter types
/// that cannot be received as owned, decoded values.
pub fn params(sig: &syn::Signature, self_ty: Option<&syn::Type>) -> syn::Result<Vec<Param>> {
    let mut out = Vec::new();
    for (i, input) in sig.inputs.iter().enumerate() {
        let syn::FnArg::Typed(pt) = input else {
            continue;
        };
        let mut ty = (*pt.ty).clone();
        if let Some(s) = self_ty {
            ReplaceSelf(s).visit_type_mut(&mut ty);
        }
        check_owned(&ty)?;
        let ident = match &*pt.pat {
            syn::Pat::Ident(p) if p.subpat.is_none() => {
                syn::Ident::new(&p.ident.to_string(), p.ident.span())
            }
            _ => format_ident!("__arg{}", i),
        };
        out.push(Param { ident, ty });
    }
    Ok(out)
}

fn check_owned(ty: &syn::Type) -> syn::Result<()> {
    match ty {
        syn::Type::Reference(r) => Err(syn::Error::new_spanned(
            r,
            "parameters of remote functions and actor methods must be owned values \
             (they arrive decoded from another instance): use e.g. `String` for `&str`, `Vec<T>` for `&[T]`",
        )),
        syn::Type::ImplTrait(t) => Err(syn::Error::new_spanned(
            t,
            "remote parameters cannot be `impl Trait`",
        )),
        _ => Ok(()),
    }
}

/// What a function returns, as seen by its callers.
pub struct Returns {
    /// The value type behind the `ObjectRef` (the `Ok` type of a `Result`).
    pub value: syn::Type,
    /// Whether the function returns a `Result`.
    pub fallible: bool,
}

pub fn returns(sig: &syn::Signature, self_ty: Option<&syn::Type>) -> Returns {
    let mut ty = match &sig.output {
        syn::ReturnType::Default => syn::parse_quote!(()),
        syn::ReturnType::Type(_, t) => (**t).clone(),
    };
    if let Some(s) = self_ty {
        ReplaceSelf(s).visit_type_mut(&mut ty);
    }
    match result_ok_type(&ty) {
        Some(ok) => Returns {
            value: ok,
            fallible: true,
        },
        None => Returns {
            value: ty,
            fallible: false,
        },
    }
}

/// `T` of `Result<T, ..>` (any path ending in `Result`), if `ty` is one.
pub fn result_ok_type(ty: &syn::Type) -> Option<syn::Type> {
    first_type_arg(ty, "Result")
}

/// The first type argument of `ty` when it is a path ending in `name<..>`.
fn first_type_arg(ty: &syn::Type, name: &str) -> Option<syn::Type> {
    let syn::Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    args.args.iter().find_map(|a| match a {
        syn::GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    })
}

/// Decodes every parameter from `__args` (generated dispatch code).
pub fn decode_params(params: &[Param]) -> TokenStream {
    let n = params.len();
    let decodes = params.iter().enumerate().map(|(i, p)| {
        let (id, ty) = (&p.ident, &p.ty);
        let name = id.to_string();
        quote!(let #id: #ty = ::fabric::__rt::decode_arg(&__args, #i, #name)?;)
    });
    quote! {
        ::fabric::__rt::check_arity(&__args, #n)?;
        #(#decodes)*
    }
}

/// Encodes every parameter into `__args` (generated caller code).
pub fn encode_params(params: &[Param]) -> TokenStream {
    let pushes = params.iter().map(|p| {
        let (id, ty) = (&p.ident, &p.ty);
        quote!(__args.push(::core::convert::Into::<::fabric::Arg<#ty>>::into(#id))?;)
    });
    quote! {
        let mut __args = ::fabric::__rt::ArgList::new();
        #(#pushes)*
    }
}

/// `name: impl Into<Arg<T>>, ..` for generated caller signatures.
pub fn caller_params(params: &[Param]) -> TokenStream {
    let ps = params.iter().map(|p| {
        let (id, ty) = (&p.ident, &p.ty);
        quote!(#id: impl ::core::convert::Into<::fabric::Arg<#ty>>)
    });
    quote!(#(#ps),*)
}

/// Replaces `Self` in types with the actor's own type.
pub struct ReplaceSelf<'a>(pub &'a syn::Type);

impl VisitMut for ReplaceSelf<'_> {
    fn visit_type_mut(&mut self, ty: &mut syn::Type) {
        if let syn::Type::Path(p) = ty
            && p.qself.is_none()
            && p.path.is_ident("Self")
        {
            *ty = self.0.clone();
            return;
        }
        syn::visit_mut::visit_type_mut(self, ty);
    }
}

/// `T` of a streaming generator's return type `Generator<T>` or
/// `Generator<'a, T, E>` (any path ending in `Generator`), if `ty` is one.
pub fn generator_item(ty: &syn::Type) -> Option<syn::Type> {
    first_type_arg(ty, "Generator")
}

/// Gives a `Generator` written without a lifetime in a free function's
/// return type (`Generator<T>`, or inside `Result<..>`) the `'static` one
/// it must have: a remote function's generator owns what it uses.
pub fn generator_static(sig: &mut syn::Signature) {
    struct Static;
    impl VisitMut for Static {
        fn visit_path_segment_mut(&mut self, seg: &mut syn::PathSegment) {
            if seg.ident == "Generator"
                && let syn::PathArguments::AngleBracketed(args) = &mut seg.arguments
                && !args
                    .args
                    .iter()
                    .any(|a| matches!(a, syn::GenericArgument::Lifetime(_)))
            {
                args.args.insert(0, syn::parse_quote!('static));
            }
            syn::visit_mut::visit_path_segment_mut(self, seg);
        }
    }
    if let syn::ReturnType::Type(_, t) = &mut sig.output {
        Static.visit_type_mut(t);
    }
}
