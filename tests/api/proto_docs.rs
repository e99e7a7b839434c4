//! The API's documentation as clients get it: the descriptors that server reflection serves
//! (what grpcurl `describe`, buf curl and IDE plugins read) carry a comment on every
//! service, rpc, message, field, oneof, enum and enum value, and the language options.
//! This is the guard that keeps a new field documented even where `buf lint` (COMMENTS) is
//! not run: build.rs keeps the source info in the descriptor set it compiles in.
use crate::helpers::{Ctx, TestApp};
use prost::Message;
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorProto};
use std::collections::{BTreeMap, HashMap};
use tonic_reflection::pb::v1::{
    server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
    server_reflection_response::MessageResponse, ServerReflectionRequest,
};

const SERVICES: [&str; 3] = [
    "checkout.v1.AdminService",
    "checkout.v1.CheckoutService",
    "checkout.v1.HostedCheckoutService",
];

const FILES: [&str; 4] = [
    "checkout/v1/admin.proto",
    "checkout/v1/checkout.proto",
    "checkout/v1/hosted.proto",
    "checkout/v1/types.proto",
];

// Field numbers in descriptor.proto, which make up SourceCodeInfo location paths.
const FILE_MESSAGE: i32 = 4;
const FILE_ENUM: i32 = 5;
const FILE_SERVICE: i32 = 6;
const MESSAGE_FIELD: i32 = 2;
const MESSAGE_NESTED: i32 = 3;
const MESSAGE_ENUM: i32 = 4;
const MESSAGE_ONEOF: i32 = 8;
const ENUM_VALUE: i32 = 2;
const SERVICE_METHOD: i32 = 2;

/// The files reflection serves for these requests, decoded.
async fn reflect(app: &TestApp, requests: Vec<MessageRequest>) -> Vec<FileDescriptorProto> {
    let requests = requests.into_iter().map(|r| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(r),
    });
    let mut stream = ServerReflectionClient::new(app.channel.clone())
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut files = Vec::new();
    while let Some(reply) = stream.message().await.unwrap() {
        let Some(MessageResponse::FileDescriptorResponse(r)) = reply.message_response else {
            panic!(
                "expected file descriptors, got {:?}",
                reply.message_response
            );
        };
        for bytes in r.file_descriptor_proto {
            files.push(FileDescriptorProto::decode(bytes.as_slice()).unwrap());
        }
    }
    files
}

/// The `checkout.v1` files as served, by name: each service's file, then (as a client such
/// as grpcurl does) every `checkout.v1` file they import, by file name.
async fn served_files(app: &TestApp) -> BTreeMap<String, FileDescriptorProto> {
    let mut files = BTreeMap::new();
    let mut requests: Vec<_> = SERVICES
        .iter()
        .map(|s| MessageRequest::FileContainingSymbol((*s).into()))
        .collect();
    while !requests.is_empty() {
        for file in reflect(app, requests).await {
            if file.package() == "checkout.v1" {
                files.insert(file.name().to_owned(), file);
            }
        }
        let mut wanted: Vec<String> = (files.values())
            .flat_map(|f| f.dependency.iter())
            .filter(|d| d.starts_with("checkout/") && !files.contains_key(*d))
            .cloned()
            .collect();
        wanted.sort();
        wanted.dedup();
        requests = wanted
            .into_iter()
            .map(MessageRequest::FileByFilename)
            .collect();
    }
    files
}

/// Walks one file and names every element whose leading comment is missing or blank.
struct Walk<'a> {
    comments: HashMap<Vec<i32>, &'a str>,
    checked: usize,
    missing: Vec<String>,
}

impl<'a> Walk<'a> {
    fn new(file: &'a FileDescriptorProto) -> Self {
        let info = file.source_code_info.as_ref();
        let locations = info.map(|i| i.location.as_slice()).unwrap_or_default();
        let comments = locations
            .iter()
            .map(|l| (l.path.clone(), l.leading_comments()))
            .collect();
        Walk {
            comments,
            checked: 0,
            missing: Vec::new(),
        }
    }

    fn check(&mut self, path: &[i32], what: String) {
        self.checked += 1;
        let comment = self.comments.get(path).copied().unwrap_or_default();
        if comment.trim().is_empty() {
            self.missing.push(what);
        }
    }

    fn message(&mut self, path: Vec<i32>, m: &DescriptorProto, parent: &str) {
        let name = format!("{parent}{}", m.name());
        // Map fields' entry messages are synthesized by protoc: nothing to comment.
        if m.options.as_ref().is_some_and(|o| o.map_entry()) {
            return;
        }
        self.check(&path, format!("message {name}"));
        for (i, f) in m.field.iter().enumerate() {
            let at = [path.as_slice(), &[MESSAGE_FIELD, i as i32]].concat();
            self.check(&at, format!("field {name}.{}", f.name()));
        }
        // A proto3 `optional` field gets a synthetic oneof, which has no source of its own.
        let synthetic: Vec<i32> = (m.field.iter())
            .filter(|f| f.proto3_optional())
            .map(|f| f.oneof_index())
            .collect();
        for (i, o) in m.oneof_decl.iter().enumerate() {
            if !synthetic.contains(&(i as i32)) {
                let at = [path.as_slice(), &[MESSAGE_ONEOF, i as i32]].concat();
                self.check(&at, format!("oneof {name}.{}", o.name()));
            }
        }
        for (i, nested) in m.nested_type.iter().enumerate() {
            let at = [path.as_slice(), &[MESSAGE_NESTED, i as i32]].concat();
            self.message(at, nested, &format!("{name}."));
        }
        for (i, e) in m.enum_type.iter().enumerate() {
            let at = [path.as_slice(), &[MESSAGE_ENUM, i as i32]].concat();
            self.enumeration(at, e, &format!("{name}."));
        }
    }

    fn enumeration(&mut self, path: Vec<i32>, e: &EnumDescriptorProto, parent: &str) {
        let name = format!("{parent}{}", e.name());
        self.check(&path, format!("enum {name}"));
        for (i, v) in e.value.iter().enumerate() {
            let at = [path.as_slice(), &[ENUM_VALUE, i as i32]].concat();
            self.check(&at, format!("enum value {name}.{}", v.name()));
        }
    }

    fn file(&mut self, file: &FileDescriptorProto) {
        for (i, m) in file.message_type.iter().enumerate() {
            self.message(vec![FILE_MESSAGE, i as i32], m, "");
        }
        for (i, e) in file.enum_type.iter().enumerate() {
            self.enumeration(vec![FILE_ENUM, i as i32], e, "");
        }
        for (i, s) in file.service.iter().enumerate() {
            self.check(&[FILE_SERVICE, i as i32], format!("service {}", s.name()));
            for (j, method) in s.method.iter().enumerate() {
                let at = [FILE_SERVICE, i as i32, SERVICE_METHOD, j as i32];
                self.check(&at, format!("rpc {}.{}", s.name(), method.name()));
            }
        }
    }
}

pub async fn reflection_serves_comments_and_language_options(ctx: Ctx) {
    let app = TestApp::spawn(&ctx).await;
    let files = served_files(&app).await;
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(names, FILES, "the checkout.v1 files served");

    let mut checked = 0;
    let mut missing = Vec::new();
    for (name, file) in &files {
        let options = file.options.clone().unwrap_or_default();
        assert_eq!(
            (
                options.go_package(),
                options.java_package(),
                options.java_multiple_files(),
                options.csharp_namespace(),
            ),
            (
                "github.com/checkout/checkout/gen/go/checkout/v1;checkoutv1",
                "com.checkout.v1",
                true,
                "Checkout.V1",
            ),
            "language options of {name}"
        );
        let mut walk = Walk::new(file);
        walk.file(file);
        checked += walk.checked;
        missing.extend(walk.missing.into_iter().map(|m| format!("{name}: {m}")));
    }
    assert!(
        missing.is_empty(),
        "{} elements have no leading comment (document them, as buf lint's COMMENTS asks):\n{}",
        missing.len(),
        missing.join("\n")
    );
    // The walk saw the whole API (well over 200 elements), not a descriptor without it.
    assert!(checked > 200, "only {checked} elements were checked");

    // And a comment reaches the client word for word (source info, not just its presence).
    let session = files["checkout/v1/checkout.proto"]
        .message_type
        .iter()
        .position(|m| m.name() == "Session")
        .unwrap();
    let walk = Walk::new(&files["checkout/v1/checkout.proto"]);
    let id_comment = walk.comments[&vec![FILE_MESSAGE, session as i32, MESSAGE_FIELD, 0]];
    assert_eq!(
        id_comment.trim(),
        "`cs_` followed by at least 128 random bits, base62."
    );
}
