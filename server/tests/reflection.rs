//! Server reflection answers in both protocol versions that tools use.

mod common;

use common::server::InProcessServer;
use schoolfleet_proto::transport::{self, ChannelOptions, ServerTrust};
use tonic_reflection::pb::{v1, v1alpha};

#[tokio::test]
async fn reflection_answers_v1_and_v1alpha_clients() {
    let server = InProcessServer::start().await;
    let channel = transport::connect(
        &server.url,
        ServerTrust::Pinned(server.pin),
        None,
        ChannelOptions::default(),
    )
    .await
    .unwrap();

    // v1alpha, as grpcurl and Python's reflection client ask.
    let mut alpha = v1alpha::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut answers = alpha
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("v1alpha reflection is served")
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answer.message_response
    else {
        panic!("unexpected answer {answer:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"schoolfleet.v1.DeviceService"), "{names:?}");

    // v1alpha resolves a symbol to its file.
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "schoolfleet.v1.TicketService".into(),
            ),
        ),
    };
    let answer = alpha
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            answer.message_response,
            Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(ref f))
                if !f.file_descriptor_proto.is_empty()
        ),
        "{answer:?}"
    );

    // v1 still answers.
    let mut v1 = v1::server_reflection_client::ServerReflectionClient::new(channel);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let answer = v1
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        answer.message_response,
        Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(_))
    ));
}
