//! The crypto adapters of the domain's ports: Argon2id for passwords and HMAC-SHA256 for
//! keyed hashes. (Token keys and signatures are the crate `aula-tokens`.)

use aula_domain::PasswordHash;
use aula_domain::services::{KeyedHasher, Password, PasswordHasher, ServiceError};
use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Argon2id with the library's default (OWASP-recommended) parameters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Argon2Passwords;

/// Runs deliberately slow work (Argon2id: ~19 MiB and tens of milliseconds a check) off the
/// async executor: on a multi-threaded runtime this worker becomes a blocking thread and its
/// other tasks move to a fresh worker, so a burst of logins cannot stall joins and chat. (A
/// single-threaded runtime, as in unit tests, has nowhere to move them.)
fn off_the_executor<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let gated = || ARGON2_GATE.run(work);
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(gated)
        }
        _ => gated(),
    }
}

/// At most one Argon2 computation per core at a time. A burst of 500 logins (teachers at
/// 7:55) would otherwise run 500 at once: ~9.5 GiB of Argon2 memory, and every login as
/// slow as the last; gated, each waits its turn and then takes its tens of milliseconds.
/// The waiting threads are tokio's blocking threads, never the async workers.
static ARGON2_GATE: Gate = Gate::new();

struct Gate {
    running: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

impl Gate {
    const fn new() -> Self {
        Self {
            running: std::sync::Mutex::new(0),
            freed: std::sync::Condvar::new(),
        }
    }

    fn limit() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }

    fn run<T>(&self, work: impl FnOnce() -> T) -> T {
        {
            // A poisoned lock only means another check panicked; the count is still right.
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            while *running >= Self::limit() {
                running = self.freed.wait(running).unwrap_or_else(|e| e.into_inner());
            }
            *running += 1;
        }
        struct Leave<'a>(&'a Gate);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                let mut running = self.0.running.lock().unwrap_or_else(|e| e.into_inner());
                *running -= 1;
                self.0.freed.notify_one();
            }
        }
        let _leave = Leave(self);
        work()
    }
}

impl PasswordHasher for Argon2Passwords {
    fn hash(&self, password: &Password) -> Result<PasswordHash, ServiceError> {
        use argon2::PasswordHasher as _;
        let phc = off_the_executor(|| {
            argon2::Argon2::default()
                .hash_password(password.expose().as_bytes())
                .map(|h| h.to_string())
        })
        .map_err(|_| ServiceError::Internal("hashing the password failed"))?;
        Ok(PasswordHash::parse(&phc)?)
    }

    fn verify(&self, password: &Password, hash: &PasswordHash) -> bool {
        use argon2::PasswordVerifier as _;
        match argon2::PasswordHash::new(hash.as_str()) {
            Ok(parsed) => off_the_executor(|| {
                argon2::Argon2::default()
                    .verify_password(password.expose().as_bytes(), &parsed)
                    .is_ok()
            }),
            Err(_) => false,
        }
    }
}

/// HMAC-SHA256 with a deployment secret, the purpose mixed in so that hashes for one
/// purpose cannot be matched against another's.
pub struct HmacHasher {
    key: hmac::Key,
}

impl HmacHasher {
    pub fn new(secret: &[u8]) -> Self {
        HmacHasher {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }
}

impl KeyedHasher for HmacHasher {
    fn keyed_hash(&self, purpose: &str, value: &[u8]) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(purpose.as_bytes());
        ctx.update(&[0]);
        ctx.update(value);
        // 128 bits are plenty to tell values apart and keep the entries short.
        URL_SAFE_NO_PAD.encode(&ctx.sign().as_ref()[..16])
    }
}

/// Random bytes from the system's CSPRNG (for secrets the portal makes itself).
pub fn random_bytes<const N: usize>() -> Result<[u8; N], ServiceError> {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut b = [0u8; N];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| ServiceError::Internal("the system random generator failed"))?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Twelve logins at once never run more Argon2 checks at a time than there are cores,
    /// and every one of them is answered.
    #[test]
    fn a_burst_of_logins_runs_at_most_one_password_check_per_core() {
        let p = Password::new_password("correct horse battery").expect("long enough");
        let h = Argon2Passwords.hash(&p).expect("hashed");
        let gate = Gate::new();
        let now = std::sync::atomic::AtomicUsize::new(0);
        let peak = std::sync::atomic::AtomicUsize::new(0);
        let verified = std::thread::scope(|scope| {
            let checks: Vec<_> = (0..12)
                .map(|_| {
                    scope.spawn(|| {
                        gate.run(|| {
                            use std::sync::atomic::Ordering::SeqCst;
                            let running = now.fetch_add(1, SeqCst) + 1;
                            peak.fetch_max(running, SeqCst);
                            let ok = {
                                use argon2::PasswordVerifier as _;
                                let parsed =
                                    argon2::PasswordHash::new(h.as_str()).expect("a PHC string");
                                argon2::Argon2::default()
                                    .verify_password(p.expose().as_bytes(), &parsed)
                                    .is_ok()
                            };
                            now.fetch_sub(1, SeqCst);
                            ok
                        })
                    })
                })
                .collect();
            checks
                .into_iter()
                .filter_map(|c| c.join().ok())
                .filter(|ok| *ok)
                .count()
        });
        assert_eq!(verified, 12);
        let peak = peak.into_inner();
        assert!(
            (1..=Gate::limit()).contains(&peak),
            "{peak} checks ran at once"
        );
    }

    #[test]
    fn a_password_verifies_against_its_own_hash_only() {
        let p = Password::new_password("correct horse battery").expect("long enough");
        let h = Argon2Passwords.hash(&p).expect("hashed");
        assert!(h.as_str().starts_with("$argon2id$"));
        assert!(Argon2Passwords.verify(&p, &h));
        assert!(!Argon2Passwords.verify(&Password::offered("correct horse battery!"), &h));
    }

    /// With one async worker, a login's password check must not hold up the other requests:
    /// a cheap task spawned while three checks run finishes before them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn password_checks_do_not_stall_the_async_workers() {
        let p = Password::new_password("correct horse battery").expect("long enough");
        let h = Argon2Passwords.hash(&p).expect("hashed");
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..3 {
            let (p, h, order) = (p.clone(), h.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                assert!(Argon2Passwords.verify(&p, &h));
                order.lock().expect("lock").push(format!("login {i}"));
            }));
        }
        tokio::task::yield_now().await;
        let o = order.clone();
        tasks.push(tokio::spawn(async move {
            o.lock().expect("lock").push("ping".to_owned());
        }));
        for t in tasks {
            t.await.expect("task");
        }
        let order = order.lock().expect("lock").clone();
        assert_eq!(order.len(), 4);
        assert_ne!(order.last().map(String::as_str), Some("ping"), "{order:?}");
    }

    #[test]
    fn keyed_hashes_depend_on_key_purpose_and_value() {
        let a = HmacHasher::new(b"secret-a");
        let b = HmacHasher::new(b"secret-b");
        let x = a.keyed_hash("cookie", b"v");
        assert_eq!(x, a.keyed_hash("cookie", b"v"));
        assert_ne!(x, b.keyed_hash("cookie", b"v"));
        assert_ne!(x, a.keyed_hash("login", b"v"));
        assert_ne!(x, a.keyed_hash("cookie", b"w"));
    }

    #[test]
    fn a_keyed_hash_hides_the_value_and_its_length() {
        let a = HmacHasher::new(b"secret-a");
        let token = "eyJhbGciOiJFZERTQSJ9.session-token-value";
        let long = a.keyed_hash("cookie", token.as_bytes());
        let short = a.keyed_hash("cookie", b"x");
        assert!(!long.contains("session") && !long.contains("eyJ"));
        assert_eq!(
            long.len(),
            short.len(),
            "the length of the value does not show"
        );
        assert!(
            long.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }
}
