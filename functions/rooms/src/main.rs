//! The rooms function: `aula_api::Function::Rooms` under the Lambda runtime.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    aula_lambda::run(aula_api::Function::Rooms).await
}
