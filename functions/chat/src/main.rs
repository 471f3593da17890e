//! The chat function: `aula_api::Function::Chat` under the Lambda runtime.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    aula_lambda::run(aula_api::Function::Chat).await
}
