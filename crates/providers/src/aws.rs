//! AWS SDK configuration shared by the Bedrock and Secrets Manager clients: region, the
//! default credential chain or an assumed role, and the SDK's retries turned off (the spoke's
//! failover decides what to retry).

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_types::SdkConfig;
use aws_types::region::Region;

/// SDK config for `region`. With `role_arn`, credentials come from STS `AssumeRole` on top of
/// the default chain (session name `switchyard-spoke`), refreshed by the SDK before expiry.
pub async fn sdk_config(region: &str, role_arn: Option<&str>) -> SdkConfig {
    let base = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .retry_config(RetryConfig::disabled())
        .load()
        .await;
    match role_arn {
        None => base,
        Some(role) => {
            let provider = aws_config::sts::AssumeRoleProvider::builder(role)
                .session_name("switchyard-spoke")
                .configure(&base)
                .build()
                .await;
            base.into_builder()
                .credentials_provider(SharedCredentialsProvider::new(provider))
                .build()
        }
    }
}
