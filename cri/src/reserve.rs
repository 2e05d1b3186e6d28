//! Name reservations for sandboxes and containers: one live object per name.
//!
//! A kubelet that times out retries the same request. The retry must not
//! wedge on the name the first attempt reserved (containerd's long-standing
//! "name is reserved" bug): while the first attempt runs, the retry waits for
//! it and shares its outcome; after it finished, the retry finds the name
//! held and the caller decides whether it is the same request.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::error::{Error, Result};

/// What an attempt ended with: the object's id, or its error as text.
type Outcome = Option<std::result::Result<String, String>>;

enum Reservation {
    InFlight(watch::Receiver<Outcome>),
    Held(String),
}

/// The reservations of one kind of object (clones share them).
#[derive(Clone)]
pub struct Names {
    kind: &'static str,
    map: Arc<Mutex<HashMap<String, Reservation>>>,
}

/// The outcome of [`Names::claim`].
pub enum Claim {
    /// The name was free: it is now in flight for the caller, who must
    /// [`Ticket::finish`] it.
    New(Ticket),
    /// The name is held by the object with this id (possibly made by a
    /// request the caller just waited for).
    Held(String),
}

/// The right to make the object a name was claimed for.
pub struct Ticket {
    key: String,
    tx: watch::Sender<Outcome>,
}

impl Names {
    pub fn new(kind: &'static str) -> Self {
        Names {
            kind,
            map: Arc::default(),
        }
    }

    /// Make the object named `key` with `work`, once: a name already held
    /// answers with its holder's id if `same(id)` (the same request again),
    /// else AlreadyExists; a request in flight is waited for. `work` runs on
    /// its own task, so a caller that gives up does not cancel it half way;
    /// its retry gets the result.
    pub async fn run<F>(
        &self,
        key: &str,
        same: impl FnOnce(&str) -> bool,
        work: F,
    ) -> Result<String>
    where
        F: Future<Output = Result<String>> + Send + 'static,
    {
        let ticket = match self.claim(key).await? {
            Claim::Held(id) if same(&id) => return Ok(id),
            Claim::Held(id) => return Err(self.reserved(key, &id)),
            Claim::New(t) => t,
        };
        let names = self.clone();
        tokio::spawn(async move {
            let result = work.await;
            names.finish(
                ticket,
                result
                    .as_deref()
                    .map_err(|e| crate::sandbox::error_chain(e)),
            );
            result
        })
        .await
        .map_err(|e| Error::Aborted(format!("{} {key}: task: {e}", self.kind)))?
    }

    /// Claim `key`, waiting for an attempt that is in flight.
    pub async fn claim(&self, key: &str) -> Result<Claim> {
        let mut rx = {
            let mut map = self.map.lock().expect("names lock");
            match map.get(key) {
                Some(Reservation::Held(id)) => return Ok(Claim::Held(id.clone())),
                Some(Reservation::InFlight(rx)) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    map.insert(key.to_owned(), Reservation::InFlight(rx));
                    return Ok(Claim::New(Ticket {
                        key: key.to_owned(),
                        tx,
                    }));
                }
            }
        };
        let outcome = rx.wait_for(Option::is_some).await.map(|o| o.clone());
        match outcome {
            Ok(Some(Ok(id))) => Ok(Claim::Held(id)),
            Ok(Some(Err(e))) => Err(Error::FailedPrecondition(format!(
                "{} {key}: the earlier request for it failed: {e}",
                self.kind
            ))),
            _ => Err(Error::Aborted(format!("{} {key}", self.kind))),
        }
    }

    /// End an attempt: on success the name is held by `id`, on failure it
    /// is free again. Waiting retries get the outcome.
    pub fn finish(&self, ticket: Ticket, outcome: std::result::Result<&str, String>) {
        {
            let mut map = self.map.lock().expect("names lock");
            match outcome {
                Ok(id) => {
                    map.insert(ticket.key.clone(), Reservation::Held(id.to_owned()));
                }
                Err(_) => {
                    map.remove(&ticket.key);
                }
            }
        }
        ticket.tx.send_replace(Some(outcome.map(str::to_owned)));
    }

    /// Mark `key` held by `id` (objects loaded at startup).
    pub fn hold(&self, key: &str, id: &str) {
        self.map
            .lock()
            .expect("names lock")
            .insert(key.to_owned(), Reservation::Held(id.to_owned()));
    }

    /// Free `key` if `id` holds it.
    pub fn release(&self, key: &str, id: &str) {
        let mut map = self.map.lock().expect("names lock");
        if matches!(map.get(key), Some(Reservation::Held(h)) if h == id) {
            map.remove(key);
        }
    }

    /// The error for a request whose name another object holds.
    pub fn reserved(&self, key: &str, holder: &str) -> Error {
        Error::NameReserved {
            kind: self.kind,
            name: key.to_owned(),
            holder: holder.to_owned(),
        }
    }
}

/// The full id `id` names among `ids` (sorted): itself, or the one id it is
/// a unique prefix of, as crictl lets users abbreviate ids.
pub fn resolve_id<V>(
    ids: &std::collections::BTreeMap<String, V>,
    id: &str,
    kind: &'static str,
) -> Result<String> {
    if ids.contains_key(id) {
        return Ok(id.to_owned());
    }
    let mut matches = ids.keys().filter(|k| !id.is_empty() && k.starts_with(id));
    match (matches.next(), matches.next()) {
        (Some(one), None) => Ok(one.clone()),
        (Some(_), Some(_)) => Err(Error::InvalidArgument(format!(
            "{kind} id prefix {id:?} is ambiguous"
        ))),
        _ => Err(Error::NotFound {
            kind,
            id: id.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_retry_waits_for_the_attempt_in_flight_and_gets_its_id() {
        let names = std::sync::Arc::new(Names::new("container"));
        let Claim::New(ticket) = names.claim("a").await.unwrap() else {
            panic!("a free name is claimed");
        };
        let n2 = names.clone();
        let retry = tokio::spawn(async move { n2.claim("a").await });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!retry.is_finished(), "the retry waits");
        names.finish(ticket, Ok("id1"));
        match retry.await.unwrap().unwrap() {
            Claim::Held(id) => assert_eq!(id, "id1"),
            Claim::New(_) => panic!("the retry must get the first attempt's object"),
        }
        names.release("a", "other");
        assert!(matches!(names.claim("a").await.unwrap(), Claim::Held(_)));
        names.release("a", "id1");
        assert!(matches!(names.claim("a").await.unwrap(), Claim::New(_)));
    }

    #[tokio::test]
    async fn a_failed_attempt_frees_the_name_and_tells_the_waiters() {
        let names = std::sync::Arc::new(Names::new("sandbox"));
        let Claim::New(ticket) = names.claim("p").await.unwrap() else {
            panic!("free");
        };
        let n2 = names.clone();
        let retry = tokio::spawn(async move { n2.claim("p").await });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        names.finish(ticket, Err("no image".into()));
        let e = retry
            .await
            .unwrap()
            .err()
            .expect("the waiter gets the failure");
        assert!(e.to_string().contains("no image"), "{e}");
        assert!(matches!(names.claim("p").await.unwrap(), Claim::New(_)));
    }
}
