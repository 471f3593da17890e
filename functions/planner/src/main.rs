//! The fleet planner: run by an EventBridge schedule (template.yaml), it puts the media
//! fleet's floor for the coming morning from the teachers' scheduled meetings.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    aula_planner::run().await
}
