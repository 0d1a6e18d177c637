//! ECR repositories and registry tokens through the official SDK.

use aws_sdk_ecr::types::{ImageScanningConfiguration, ImageTagMutability, Tag};
use base64::Engine;

use crate::berth;

fn code<E: aws_sdk_ecr::error::ProvideErrorMetadata>(e: &aws_sdk_ecr::error::SdkError<E>) -> String {
    match e {
        aws_sdk_ecr::error::SdkError::ServiceError(s) => s.err().code().unwrap_or_default().to_string(),
        _ => "<not a service error>".into(),
    }
}

#[tokio::test]
async fn repositories_lifecycle_and_errors() {
    let b = berth().await;
    let ecr = b.ecr().await;
    let r = ecr
        .create_repository()
        .repository_name("team/ecr-simplehttp")
        .image_scanning_configuration(ImageScanningConfiguration::builder().scan_on_push(true).build())
        .image_tag_mutability(ImageTagMutability::Immutable)
        .tags(Tag::builder().key("app").value("web").build().unwrap())
        .send()
        .await
        .unwrap();
    let repo = r.repository().unwrap();
    let host = b.endpoint.trim_start_matches("http://");
    assert_eq!(repo.repository_uri(), Some(format!("{host}/team/ecr-simplehttp").as_str()));
    assert_eq!(repo.registry_id(), Some(b.key.account.as_str()));
    assert_eq!(
        repo.repository_arn(),
        Some(format!("arn:aws:ecr:us-east-1:{}:repository/team/ecr-simplehttp", b.key.account).as_str())
    );
    assert!(repo.image_scanning_configuration().unwrap().scan_on_push());
    assert_eq!(repo.image_tag_mutability(), Some(&ImageTagMutability::Immutable));

    let err = ecr.create_repository().repository_name("team/ecr-simplehttp").send().await.unwrap_err();
    assert_eq!(code(&err), "RepositoryAlreadyExistsException");
    for bad in ["A", "Upper", "a//b", "-x"] {
        let err = ecr.create_repository().repository_name(bad).send().await.unwrap_err();
        assert_eq!(code(&err), "InvalidParameterException", "{bad}");
    }
    let err = ecr.create_repository().repository_name("other").registry_id("999999999999").send().await.unwrap_err();
    assert_eq!(code(&err), "InvalidParameterException");

    for i in 0..3 {
        ecr.create_repository().repository_name(format!("r{i}")).send().await.unwrap();
    }
    let page = ecr.describe_repositories().max_results(2).send().await.unwrap();
    assert_eq!(page.repositories().len(), 2);
    let rest = ecr.describe_repositories().next_token(page.next_token().unwrap()).send().await.unwrap();
    assert_eq!(page.repositories().len() + rest.repositories().len(), 4);
    let err = ecr.describe_repositories().repository_names("missing").send().await.unwrap_err();
    assert_eq!(code(&err), "RepositoryNotFoundException");

    // Another account sees none of them.
    let other = b.create_account();
    let theirs = b.ecr_as(&other, "us-east-1").await;
    assert!(theirs.describe_repositories().send().await.unwrap().repositories().is_empty());

    let d = ecr.delete_repository().repository_name("r0").send().await.unwrap();
    assert_eq!(d.repository().unwrap().repository_name(), Some("r0"));
    let err = ecr.delete_repository().repository_name("r0").send().await.unwrap_err();
    assert_eq!(code(&err), "RepositoryNotFoundException");
}

#[tokio::test]
async fn authorization_tokens_are_docker_logins_valid_for_twelve_hours() {
    let b = berth().await;
    let r = b.ecr().await.get_authorization_token().send().await.unwrap();
    let data = &r.authorization_data()[0];
    let decoded = base64::engine::general_purpose::STANDARD.decode(data.authorization_token().unwrap()).unwrap();
    let text = String::from_utf8(decoded).unwrap();
    let (user, password) = text.split_once(':').unwrap();
    assert_eq!(user, "AWS");
    assert!(password.len() > 40);
    let expires = data.expires_at().unwrap().secs();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((expires - now - 12 * 3600).abs() < 60, "expires in 12 hours");
    assert_eq!(data.proxy_endpoint(), Some(b.endpoint.as_str()));
    // Each call gives a fresh token.
    let again = b.ecr().await.get_authorization_token().send().await.unwrap();
    assert_ne!(again.authorization_data()[0].authorization_token(), data.authorization_token());
}
