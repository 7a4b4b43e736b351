//! The response cache in the request path: the lookup (exact, then semantic), coalescing of
//! identical misses, filling from plain and streamed answers, the judge, and purges.

use crate::ctx::{CacheControls, Origin};
use crate::runtime::ModelRoute;
use crate::semantic::Probe;
use crate::Gateway;
use plexus_auth::roles::Principal;
use plexus_cache::coalesce::{Coalescer, Flight};
use plexus_cache::key;
use plexus_cache::store::{CacheStore, Entry, Purge, RedisTier};
use plexus_core::clock::SharedClock;
use plexus_core::config::{CacheScope, CacheSettings, SemanticInput};
use plexus_protocol::openai::{ChatCompletion, ChatCompletionRequest};
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;

/// What the cache will do for one request.
#[derive(Debug, Clone)]
pub struct Plan {
    pub key: String,
    pub namespace: String,
    pub model: String,
    pub tags: Vec<String>,
    pub ttl: Duration,
    pub lookup: bool,
    /// The question to embed and its partition, when the semantic cache is on.
    pub semantic: Option<(String, String)>,
}

/// How a cached answer was found.
#[derive(Debug, Clone)]
pub struct Hit {
    pub entry: Arc<Entry>,
    /// `hit` or `semantic-hit`.
    pub kind: &'static str,
    pub similarity: Option<f32>,
}

impl Hit {
    /// An exact hit.
    pub fn exact(entry: Arc<Entry>) -> Hit {
        Hit {
            entry,
            kind: "hit",
            similarity: None,
        }
    }
}

/// What a lookup found: a hit, or on a miss maybe a refused candidate for the exploring judge.
#[derive(Default)]
pub struct Found {
    pub hit: Option<Hit>,
    pub probe: Option<Probe>,
}

pub struct ResponseCache {
    settings: CacheSettings,
    store: Arc<CacheStore>,
    coalescer: Arc<Coalescer>,
    clock: SharedClock,
    semantic: Option<crate::semantic::SemanticCache>,
}

impl ResponseCache {
    pub fn new(
        settings: &CacheSettings,
        clock: SharedClock,
    ) -> Result<ResponseCache, crate::StartupError> {
        let redis = match &settings.redis {
            None => None,
            Some(url) => Some(
                RedisTier::new(url.expose_secret(), &settings.redis_prefix)
                    .map_err(|e| crate::StartupError::setting("cache.redis", e.to_string()))?,
            ),
        };
        let store = Arc::new(CacheStore::new(settings.max_bytes, redis, clock.clone()));
        let semantic = match &settings.semantic {
            None => None,
            Some(s) => Some(crate::semantic::SemanticCache::new(s, store.clone())?),
        };
        Ok(ResponseCache {
            settings: settings.clone(),
            store,
            coalescer: Coalescer::new(),
            clock,
            semantic,
        })
    }

    pub fn store(&self) -> &Arc<CacheStore> {
        &self.store
    }

    pub fn semantic(&self) -> Option<&crate::semantic::SemanticCache> {
        self.semantic.as_ref()
    }

    /// The plan for a chat request, or `None` when the cache stays out of it. A salt keeps
    /// independent samples of one prompt apart (in the key, the semantic partition and the
    /// coalescing of misses).
    pub fn plan(
        &self,
        controls: CacheControls,
        salt: Option<&str>,
        chat: &ChatCompletionRequest,
        principal: &Principal,
        route: &ModelRoute,
    ) -> Option<Plan> {
        if controls.no_store {
            return None;
        }
        if !(key::is_deterministic(chat) || self.settings.nondeterministic || controls.force) {
            return None;
        }
        let namespace = match (self.settings.scope, &principal.team_id) {
            (CacheScope::Global, _) => "global".to_owned(),
            (CacheScope::Team, Some(team)) => format!("team:{team}"),
            _ => format!("key:{}", principal.id),
        };
        let salted;
        let fingerprint = match salt {
            None => &*route.fingerprint,
            Some(salt) => {
                salted = format!("{}#salt:{salt}", route.fingerprint);
                salted.as_str()
            }
        };
        let tags = chat
            .metadata
            .as_ref()
            .and_then(|m| m.get("cache_tags"))
            .and_then(|t| t.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let semantic = self.semantic.as_ref().and_then(|s| {
            let part = match s.input() {
                SemanticInput::LastUser => key::QuestionPart::LastUser,
                SemanticInput::Conversation => key::QuestionPart::Conversation,
            };
            key::semantic_parts(&namespace, fingerprint, chat, part)
        });
        Some(Plan {
            key: key::exact_key(&namespace, fingerprint, chat),
            namespace,
            model: chat.model.clone(),
            tags,
            ttl: controls.ttl.unwrap_or(self.settings.ttl),
            lookup: !controls.no_cache,
            semantic,
        })
    }

    /// An exact hit, else a semantic one; with a miss, maybe a refused candidate for the
    /// exploring judge.
    pub async fn lookup(&self, gateway: &Gateway, origin: &Origin, plan: &Plan) -> Found {
        if let Some(entry) = self.store.get(&plan.key).await {
            return Found {
                hit: Some(Hit::exact(entry)),
                probe: None,
            };
        }
        let (Some((question, partition)), Some(semantic)) = (&plan.semantic, &self.semantic) else {
            return Found::default();
        };
        let found = semantic
            .lookup(gateway, origin, &plan.model, question, partition)
            .await;
        Found {
            hit: found.hit.map(|(entry, similarity)| Hit {
                entry,
                kind: "semantic-hit",
                similarity: Some(similarity),
            }),
            probe: found.probe,
        }
    }

    pub fn flight(&self, key: &str) -> Flight {
        self.coalescer.join(key)
    }

    /// Stores an answer (`body`: an OpenAI chat completion) under the plan's key, and has its
    /// question indexed for the semantic cache in the background (embedding it takes
    /// milliseconds the response does not wait for).
    pub async fn fill(
        self: &Arc<Self>,
        gateway: &Gateway,
        origin: &Origin,
        plan: &Plan,
        body: String,
        served_by: String,
    ) -> Arc<Entry> {
        let now = self.clock.now_unix_ms();
        let entry = Arc::new(Entry {
            key: plan.key.clone(),
            namespace: plan.namespace.clone(),
            model: plan.model.clone(),
            tags: plan.tags.clone(),
            created_ms: now,
            expires_ms: now + i64::try_from(plan.ttl.as_millis()).unwrap_or(i64::MAX / 2),
            served_by,
            body,
        });
        self.store.put(entry.clone()).await;
        if let (Some(semantic), Some((question, partition))) = (&self.semantic, &plan.semantic) {
            let Some(ticket) = semantic.admit_background() else {
                return entry;
            };
            let (cache, gateway2, entry) = (self.clone(), gateway.clone(), entry.clone());
            let (question, partition, origin) =
                (question.clone(), partition.clone(), origin.clone());
            gateway.tasks().spawn(async move {
                let _ticket = ticket;
                if let Some(semantic) = &cache.semantic {
                    semantic
                        .insert(&gateway2, &origin, &question, &partition, &entry)
                        .await;
                }
            });
        }
        entry
    }

    /// Purges matching entries everywhere (semantic neighbours of purged entries are dropped
    /// from the index when next met).
    pub async fn purge(&self, filter: &Purge) -> usize {
        self.store.purge(filter).await
    }
}

/// A miss on its way to the cache: filled from the answer once it is complete, then the
/// requests that waited on this one (coalesced) get it too.
pub struct CacheFill {
    cache: Arc<ResponseCache>,
    plan: Plan,
    leader: Option<plexus_cache::coalesce::Leader>,
    assembler: plexus_cache::replay::Assembler,
    /// A candidate the lookup refused: the fresh answer will tell whether it was right.
    probe: Option<Probe>,
    /// The request the answer is for (its system calls' parent).
    origin: Origin,
}

impl CacheFill {
    pub fn new(
        cache: Arc<ResponseCache>,
        plan: Plan,
        leader: Option<plexus_cache::coalesce::Leader>,
        probe: Option<Probe>,
        origin: Origin,
    ) -> CacheFill {
        CacheFill {
            cache,
            plan,
            leader,
            assembler: Default::default(),
            probe,
            origin,
        }
    }

    /// Adds one streamed chunk to the answer being assembled.
    pub fn observe(&mut self, chunk: &plexus_protocol::openai::ChatCompletionChunk) {
        self.assembler.push(chunk);
    }

    /// Stores a complete answer (an OpenAI chat completion as JSON), and has the exploring
    /// judge compare it with the refused candidate's.
    pub async fn complete(self, gateway: &Gateway, body: String, served_by: String) {
        if let Some(probe) = &self.probe {
            let fresh = serde_json::from_str::<ChatCompletion>(&body)
                .ok()
                .map(|c| answer_text(&c));
            self.cache.compare_later(
                gateway,
                &self.origin,
                Judged {
                    model: probe.model.clone(),
                    partition: probe.partition.clone(),
                    key: probe.entry.key.clone(),
                    similarity: probe.similarity,
                },
                probe.entry.body.clone(),
                std::future::ready(fresh),
            );
        }
        let entry = self
            .cache
            .fill(gateway, &self.origin, &self.plan, body, served_by)
            .await;
        if let Some(leader) = self.leader {
            leader.complete(entry);
        }
    }

    /// Stores a stream that ended well, as the completion its chunks amount to.
    pub async fn complete_stream(
        self,
        gateway: &Gateway,
        usage: plexus_protocol::openai::Usage,
        served_by: String,
    ) {
        let mut this = self;
        let assembler = std::mem::take(&mut this.assembler);
        let mut completion = assembler.finish();
        if completion.usage.is_none() {
            completion.usage = Some(usage);
        }
        if let Ok(body) = serde_json::to_string(&completion) {
            this.complete(gateway, body, served_by).await;
        }
    }
}

impl ResponseCache {
    /// On a sampled share of semantic hits, asks the model afresh in the background and
    /// records whether the cached answer agrees, which trains the entry's threshold.
    pub fn maybe_judge(
        self: &Arc<Self>,
        gateway: &Gateway,
        origin: &Origin,
        plan: &Plan,
        hit: &Hit,
        chat: &ChatCompletionRequest,
    ) {
        let Some(judge) = self.semantic.as_ref().and_then(|s| s.judge()) else {
            return;
        };
        if rand::random::<f64>() >= judge.sample_rate {
            return;
        }
        let (Some((_, partition)), Some(similarity)) = (&plan.semantic, hit.similarity) else {
            return;
        };
        let (gateway2, chat, origin2) = (gateway.clone(), chat.clone(), origin.clone());
        self.compare_later(
            gateway,
            origin,
            Judged {
                model: plan.model.clone(),
                partition: partition.clone(),
                key: hit.entry.key.clone(),
                similarity,
            },
            hit.entry.body.clone(),
            async move { gateway2.fresh_answer(&origin2, chat).await },
        );
    }

    /// In the background: waits for the fresh answer, compares it with the cached one (cosine
    /// of their embeddings against `judge.agreement`) and records the outcome.
    fn compare_later<F>(
        self: &Arc<Self>,
        gateway: &Gateway,
        origin: &Origin,
        judged: Judged,
        cached_body: String,
        fresh: F,
    ) where
        F: std::future::Future<Output = Option<String>> + Send + 'static,
    {
        let Some(semantic) = &self.semantic else {
            return;
        };
        let Some(judge) = semantic.judge() else {
            return;
        };
        let agreement = judge.agreement;
        let Some(ticket) = semantic.admit_background() else {
            return;
        };
        let (cache, gateway2, origin) = (self.clone(), gateway.clone(), origin.clone());
        gateway.tasks().spawn(async move {
            let _ticket = ticket;
            let Some(fresh) = fresh.await else {
                return;
            };
            let Some(semantic) = &cache.semantic else {
                return;
            };
            let Ok(cached) = serde_json::from_str::<ChatCompletion>(&cached_body) else {
                return;
            };
            let cached = answer_text(&cached);
            let agrees = if cached == fresh {
                true
            } else {
                let (Some(a), Some(b)) = (
                    semantic.embed_background(&gateway2, &origin, &cached).await,
                    semantic.embed_background(&gateway2, &origin, &fresh).await,
                ) else {
                    return;
                };
                let cosine: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
                cosine >= agreement
            };
            let rec = semantic.outcome(
                &judged.model,
                &judged.partition,
                &judged.key,
                judged.similarity,
                agrees,
            );
            semantic.record_outcome(rec).await;
        });
    }
}

/// The cached entry a judgement is about.
struct Judged {
    model: String,
    partition: String,
    key: String,
    similarity: f32,
}

/// What the judge compares of an answer: the first choice's text, and its tool calls.
pub fn answer_text(completion: &ChatCompletion) -> String {
    let Some(message) = completion.choices.first().map(|c| &c.message) else {
        return String::new();
    };
    let mut text = message.content.clone().unwrap_or_default();
    for call in message.tool_calls.iter().flatten() {
        text.push('\n');
        text.push_str(&call.function.name);
        text.push('(');
        text.push_str(&call.function.arguments);
        text.push(')');
    }
    text
}
