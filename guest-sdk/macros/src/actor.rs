//! `#[fabric::actor]` on a struct (the class) and on its `impl` block.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::options;
use crate::signature::{
    caller_params, decode_params, encode_params, generator_item, params, result_ok_type, returns,
};

pub fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let item: syn::Item = syn::parse2(item)?;
    match item {
        syn::Item::Struct(s) => expand_struct(attr, s),
        syn::Item::Impl(i) => expand_impl(attr, i),
        other => Err(syn::Error::new_spanned(
            other,
            "#[fabric::actor] goes on the actor's struct and on its impl block",
        )),
    }
}

fn handle_ident(class: &syn::Ident) -> syn::Ident {
    format_ident!("{}Handle", class)
}

fn expand_struct(attr: TokenStream, s: syn::ItemStruct) -> syn::Result<TokenStream> {
    if !attr.is_empty() {
        return Err(syn::Error::new_spanned(
            attr,
            "the struct takes no options; pass `fabric::ActorOptions` to `Name::options(..)`",
        ));
    }
    if !s.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &s.generics,
            "actor classes cannot be generic",
        ));
    }
    let class = &s.ident;
    let vis = &s.vis;
    let handle = handle_ident(class);
    let name = class.to_string();
    let doc = format!(
        "The remote methods of actor [`{class}`]; reach them through `ActorHandle<{class}>`."
    );
    Ok(quote! {
        #s

        #[doc = #doc]
        #[derive(Clone)]
        #vis struct #handle {
            __actor: ::fabric::__rt::ActorRef,
        }

        impl ::core::convert::From<::fabric::__rt::ActorRef> for #handle {
            fn from(actor: ::fabric::__rt::ActorRef) -> Self {
                #handle { __actor: actor }
            }
        }

        impl ::fabric::ActorClass for #class {
            const NAME: &'static str = #name;
            type Methods = #handle;
        }
    })
}

/// The constructor's kind of return: `Self` or `Result<Self, E>`.
fn ctor_fallible(sig: &syn::Signature, class: &syn::Ident) -> syn::Result<bool> {
    let is_class = |t: &syn::Type| matches!(t, syn::Type::Path(p) if p.qself.is_none() && (p.path.is_ident("Self") || p.path.is_ident(class)));
    match &sig.output {
        syn::ReturnType::Type(_, t) if is_class(t) => Ok(false),
        syn::ReturnType::Type(_, t) if result_ok_type(t).as_ref().is_some_and(is_class) => Ok(true),
        _ => Err(syn::Error::new_spanned(
            sig,
            "the constructor `new` must return `Self` or `Result<Self, E>`",
        )),
    }
}

/// The options `#[fabric::actor(..)]` on the impl block takes.
const ACTOR_OPTIONS: &[&str] = &[
    "num_cpus",
    "num_gpus",
    "memory",
    "resources",
    "max_restarts",
    "max_task_retries",
    "max_concurrency",
];

fn expand_impl(attr: TokenStream, imp: syn::ItemImpl) -> syn::Result<TokenStream> {
    let declared = options::parse(attr, ACTOR_OPTIONS)?;
    let class = class_of(&imp)?;
    let self_ty = (*imp.self_ty).clone();
    let (ctor, methods) = split_items(&imp)?;
    let concurrent = methods.iter().any(|m| m.asyncness.is_some());
    if concurrent {
        check_concurrent(&methods)?;
    }
    let ctor_params = params(ctor, Some(&self_ty))?;
    let ctor_caller = caller_params(&ctor_params);
    let ctor_names: Vec<_> = ctor_params.iter().map(|p| &p.ident).collect();
    let ctor_encode = encode_params(&ctor_params);
    let ctor_decode = decode_params(&ctor_params);
    let construct = if ctor_fallible(ctor, &class)? {
        quote!(::fabric::__ret_result!(<#self_ty>::new(#(#ctor_names),*), ::fabric::__rt::boxed))
    } else {
        quote!(::fabric::__rt::boxed(<#self_ty>::new(#(#ctor_names),*)))
    };
    let calls = &declared.calls;
    let handle = handle_ident(&class);
    let builder = format_ident!("{}Builder", class);
    let mut handle_methods = Vec::new();
    let mut dispatch_arms = Vec::new();
    for sig in methods {
        let (method, arm) = method_code(sig, &class, &self_ty, concurrent)?;
        handle_methods.push(method);
        dispatch_arms.push(arm);
    }
    // A concurrent actor runs up to 1,000 calls at once unless told (Ray's
    // default for async actors).
    let default_concurrency = match concurrent {
        true => quote!(.max_concurrency(1000)),
        false => quote!(),
    };

    let registration = registration(
        &self_ty,
        &ctor_decode,
        &construct,
        &dispatch_arms,
        concurrent,
    );
    let doc_builder = format!("Creates a [`{class}`] actor with chosen options.");
    let creation = quote! {
        #[allow(private_interfaces, clippy::all)]
        impl #self_ty {
            /// Creates the actor; returns a handle to call it through.
            pub fn remote(#ctor_caller) -> ::fabric::Result<::fabric::ActorHandle<#self_ty>> {
                <#self_ty>::options(::fabric::ActorOptions::new()).remote(#(#ctor_names),*)
            }

            /// An actor creation with `options` (name, resources, ..).
            pub fn options(options: ::fabric::ActorOptions) -> #builder {
                #builder { options: ::fabric::ActorOptions::new() #default_concurrency #(#calls)* .merge(options) }
            }
        }

        #[doc = #doc_builder]
        #[allow(private_interfaces)]
        pub struct #builder {
            options: ::fabric::ActorOptions,
        }

        #[allow(private_interfaces, clippy::all)]
        impl #builder {
            /// Creates the actor.
            pub fn remote(self, #ctor_caller) -> ::fabric::Result<::fabric::ActorHandle<#self_ty>> {
                #ctor_encode
                ::fabric::__rt::create_actor::<#self_ty>(__args, &self.options)
            }
        }
    };
    Ok(quote! {
        #imp

        #creation

        #[allow(private_interfaces, clippy::all)]
        impl #handle {
            #(#handle_methods)*
        }

        #registration
    })
}

/// The constructor and dispatcher the guest's `ActorClassEntry` registers:
/// for a concurrent actor, a dispatcher that starts each call as a future
/// over the shared state.
fn registration(
    self_ty: &syn::Type,
    ctor_decode: &TokenStream,
    construct: &TokenStream,
    dispatch_arms: &[TokenStream],
    concurrent: bool,
) -> TokenStream {
    // A concurrent actor's calls start as futures over the shared state;
    // its `call` is never used (the host runs it through `actor-run`).
    let (calls, call_async) = match concurrent {
        true => (
            quote! {
                fn __call(
                    _: &mut dyn ::std::any::Any,
                    _: &str,
                    _: ::std::vec::Vec<::std::vec::Vec<u8>>,
                ) -> ::std::result::Result<::fabric::__rt::Returned, ::fabric::__rt::CallError> {
                    ::std::result::Result::Err(::fabric::__rt::CallError::UnknownMethod)
                }

                fn __call_async(
                    __state: ::std::rc::Rc<dyn ::std::any::Any>,
                    __method: &str,
                    __args: ::std::vec::Vec<::std::vec::Vec<u8>>,
                ) -> ::std::result::Result<::fabric::__rt::CallFuture, ::fabric::__rt::CallError> {
                    let __this: ::std::rc::Rc<#self_ty> = match __state.downcast::<#self_ty>() {
                        ::std::result::Result::Ok(s) => s,
                        ::std::result::Result::Err(_) => unreachable!("an actor's state has its class's type"),
                    };
                    match __method {
                        #(#dispatch_arms)*
                        _ => ::std::result::Result::Err(::fabric::__rt::CallError::UnknownMethod),
                    }
                }
            },
            quote!(::std::option::Option::Some(__call_async)),
        ),
        false => (
            quote! {
                fn __call(
                    __state: &mut dyn ::std::any::Any,
                    __method: &str,
                    __args: ::std::vec::Vec<::std::vec::Vec<u8>>,
                ) -> ::std::result::Result<::fabric::__rt::Returned, ::fabric::__rt::CallError> {
                    let __this = __state
                        .downcast_mut::<#self_ty>()
                        .expect("an actor's state has its class's type");
                    match __method {
                        #(#dispatch_arms)*
                        _ => ::std::result::Result::Err(::fabric::__rt::CallError::UnknownMethod),
                    }
                }
            },
            quote!(::std::option::Option::None),
        ),
    };
    quote! {
        const _: () = {
            fn __new(__args: ::std::vec::Vec<::std::vec::Vec<u8>>)
                -> ::std::result::Result<::std::boxed::Box<dyn ::std::any::Any>, ::fabric::__rt::CallError>
            {
                #ctor_decode
                #construct
            }

            #calls

            ::fabric::__rt::inventory::submit! {
                ::fabric::__rt::ActorClassEntry {
                    name: <#self_ty as ::fabric::ActorClass>::NAME,
                    new: __new,
                    call: __call,
                    call_async: #call_async,
                }
            }
        };
    }
}

/// The actor class's name, from a plain inherent `impl` block.
fn class_of(imp: &syn::ItemImpl) -> syn::Result<syn::Ident> {
    if let Some((_, path, _)) = &imp.trait_ {
        return Err(syn::Error::new_spanned(
            path,
            "#[fabric::actor] goes on the inherent impl block, not a trait impl",
        ));
    }
    if !imp.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &imp.generics,
            "actor classes cannot be generic",
        ));
    }
    match &*imp.self_ty {
        syn::Type::Path(p) if p.qself.is_none() => p
            .path
            .segments
            .last()
            .map(|s| s.ident.clone())
            .ok_or_else(|| syn::Error::new_spanned(&imp.self_ty, "expected the actor's type")),
        _ => Err(syn::Error::new_spanned(
            &imp.self_ty,
            "expected the actor's type",
        )),
    }
}

/// The constructor (`new`) and the methods (`&self` or `&mut self`) of the block.
fn split_items(imp: &syn::ItemImpl) -> syn::Result<(&syn::Signature, Vec<&syn::Signature>)> {
    let mut ctor = None;
    let mut methods = Vec::new();
    for item in &imp.items {
        let syn::ImplItem::Fn(f) = item else { continue };
        match f.sig.inputs.first() {
            Some(syn::FnArg::Receiver(r)) => {
                if r.reference.is_none() {
                    return Err(syn::Error::new_spanned(
                        r,
                        "actor methods take `&self` or `&mut self`",
                    ));
                }
                if !f.sig.generics.params.is_empty() {
                    return Err(syn::Error::new_spanned(
                        &f.sig.generics,
                        "actor methods cannot be generic",
                    ));
                }
                methods.push(&f.sig);
            }
            _ if f.sig.ident == "new" => ctor = Some(&f.sig),
            _ => {}
        }
    }
    let ctor = ctor.ok_or_else(|| {
        syn::Error::new_spanned(
            &imp.self_ty,
            "an actor needs a constructor: `fn new(..) -> Self`",
        )
    })?;
    Ok((ctor, methods))
}

/// One method's caller on the handle and its arm in the dispatcher.
fn method_code(
    sig: &syn::Signature,
    class: &syn::Ident,
    self_ty: &syn::Type,
    concurrent: bool,
) -> syn::Result<(TokenStream, TokenStream)> {
    let m = &sig.ident;
    let m_name = m.to_string();
    let ps = params(sig, Some(self_ty))?;
    let ret = returns(sig, Some(self_ty));
    let value_ty = &ret.value;
    let caller = caller_params(&ps);
    let encode = encode_params(&ps);
    let decode = decode_params(&ps);
    let names: Vec<_> = ps.iter().map(|p| &p.ident).collect();
    let item = generator_item(value_ty);
    let encode_ret = match &item {
        Some(_) => crate::remote::generator_ret(ret.fallible),
        None if ret.fallible => quote!(::fabric::__ret_result!(__out, ::fabric::__rt::ret_value)),
        None => quote!(::fabric::__rt::ret(&__out)),
    };
    let (call_ty, call_new) = match &item {
        Some(t) => (
            quote!(::fabric::ActorStreamMethod<#t>),
            quote!(::fabric::ActorStreamMethod::new),
        ),
        None => (
            quote!(::fabric::ActorMethod<#value_ty>),
            quote!(::fabric::ActorMethod::new),
        ),
    };
    let doc = format!("Calls `{class}::{m_name}` on the actor; `.remote()` queues it.");
    let method = quote! {
        #[doc = #doc]
        pub fn #m(&self, #caller) -> #call_ty {
            let __built = (|| -> ::fabric::Result<::fabric::__rt::ArgList> {
                #encode
                ::std::result::Result::Ok(__args)
            })();
            #call_new(self.__actor.clone(), #m_name, __built)
        }
    };
    let arm = match (concurrent, &sig.asyncness) {
        (false, _) => quote! {
            #m_name => {
                #decode
                let __out = __this.#m(#(#names),*);
                #encode_ret
            }
        },
        // A call of a concurrent actor is a future over the shared state.
        (true, Some(_)) => quote! {
            #m_name => {
                #decode
                ::std::result::Result::Ok(::std::boxed::Box::pin(async move {
                    let __out = __this.#m(#(#names),*).await;
                    #encode_ret
                }))
            }
        },
        // A plain method of a concurrent actor runs at once, to its end.
        (true, None) => quote! {
            #m_name => {
                #decode
                let __out = __this.#m(#(#names),*);
                let __done = { #encode_ret };
                ::std::result::Result::Ok(::std::boxed::Box::pin(::std::future::ready(__done)))
            }
        },
    };
    Ok((method, arm))
}

/// A class with `async fn` methods is a concurrent actor: its calls share
/// its state while they run, so every method takes `&self`. A generator
/// method yields its items as it returns, waiting for room as it goes
/// (a plain method of such a class runs to its end when called).
fn check_concurrent(methods: &[&syn::Signature]) -> syn::Result<()> {
    for sig in methods {
        if let Some(syn::FnArg::Receiver(r)) = sig.inputs.first()
            && r.mutability.is_some()
        {
            return Err(syn::Error::new_spanned(
                r,
                "an actor with `async fn` methods runs calls concurrently on one state: its \
                 methods take `&self` (keep what changes in a `Cell` or `RefCell`)",
            ));
        }
    }
    Ok(())
}
