//! One contract, two stores: the in-process store must behave like MongoDB.
use chrono::Duration;
use companion_backend::domain::{
    now, AvatarUrl, Conversation, ConversationId, ConversationSummary, ConversationTitle, MemoryFact, MemoryText,
    Message, MessageError, MessageId, MessageProgress, MessageStatus, Nickname, OpenId, ProfilePatch, Role, Served,
    SummaryText, Usage, UserId,
};
use companion_backend::store::{ConversationCursor, DynStore, GenerationClaim};

macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        mod in_process {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(std::sync::Arc::new(companion_backend::store::InMemoryStore::new())).await;
                }
            )*
        }
        mod mongodb {
            $(
                #[tokio::test]
                async fn $name() {
                    crate::requires_mongodb!();
                    let store = crate::helpers::mongo_store(&crate::helpers::unique_db_name()).await;
                    super::$name(store).await;
                }
            )*
        }
    };
}

contract_tests!(
    pending_notices_and_activity_are_kept_per_user_and_acknowledged_only_at_their_version,
    minor_mode_and_its_consent_round_trip,
    takeovers_and_crisis_flags_are_kept_and_the_crisis_queue_lists_newest_first,
    safety_events_list_newest_first_per_user,
    the_same_openid_always_maps_to_the_same_user,
    concurrent_first_logins_of_one_openid_create_one_user,
    a_profile_update_changes_only_the_given_fields,
    conversations_list_newest_activity_first_with_a_cursor,
    conversations_are_private_to_their_owner,
    deleting_a_conversation_removes_its_messages,
    messages_list_chronologically_and_page_backwards,
    progress_is_saved_and_read_back,
    only_one_generation_claims_a_conversation_until_released_or_expired,
    a_renewed_lease_holds_past_its_first_expiry_and_only_its_holder_renews,
    abandoned_streaming_replies_are_interrupted_but_final_ones_and_the_new_one_are_not,
    counters_add_up_per_key_and_concurrently,
    a_final_reply_never_changes_again,
    an_expired_counter_reads_zero_and_counts_again_from_zero,
    many_replies_progress_is_saved_in_one_call_except_cancelled_or_final_ones,
    many_leases_are_renewed_in_one_call_only_for_their_holders,
    memories_belong_to_one_user_and_persona_and_list_oldest_first,
    a_memory_is_updated_and_deleted_only_by_its_owner,
    a_memory_job_is_claimed_by_one_holder_until_its_lease_runs_out,
    a_memory_job_with_new_turns_outlives_the_run_that_missed_them,
    a_failed_memory_job_counts_its_attempts_and_waits,
    a_summary_is_replaced_only_by_one_reaching_further,
    what_memory_learned_through_only_moves_forward_and_forgetting_all_moves_it,
    the_persona_catalog_is_replaced_only_from_the_revision_it_was_read_at,
);

fn openid(s: &str) -> OpenId {
    OpenId::parse(s).unwrap()
}

fn conversation(user: UserId, title: &str, at: chrono::DateTime<chrono::Utc>) -> Conversation {
    Conversation::new(user, "xiaoxi", ConversationTitle::parse(title).unwrap(), at)
}

fn message(c: &Conversation, role: Role, content: &str) -> Message {
    let at = now();
    Message {
        id: MessageId::new(),
        conversation_id: c.id,
        user_id: c.user_id,
        role,
        content: content.into(),
        status: MessageStatus::Complete,
        created_at: at,
        reasoning_content: None,
        usage: None,
        finish_reason: None,
        error: None,
        served: None,
        updated_at: at,
    }
}

async fn the_same_openid_always_maps_to_the_same_user(store: DynStore) {
    let first = store.find_or_create_user(&openid("o_same")).await.unwrap();
    let second = store.find_or_create_user(&openid("o_same")).await.unwrap();
    let other = store.find_or_create_user(&openid("o_other")).await.unwrap();

    assert_eq!(first.id, second.id);
    assert_eq!(first.created_at, second.created_at);
    assert_ne!(first.id, other.id);
    assert_eq!(store.get_user(first.id).await.unwrap().unwrap().openid, openid("o_same"));
    assert!(store.get_user(UserId::new()).await.unwrap().is_none());
}

async fn concurrent_first_logins_of_one_openid_create_one_user(store: DynStore) {
    let attempts = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.find_or_create_user(&openid("o_race")).await.unwrap().id })
    });
    let ids: Vec<UserId> = futures_util::future::join_all(attempts).await.into_iter().map(Result::unwrap).collect();

    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
}

async fn a_profile_update_changes_only_the_given_fields(store: DynStore) {
    let user = store.find_or_create_user(&openid("o_profile")).await.unwrap();
    let patch = ProfilePatch { nickname: Some(Nickname::parse("小明").unwrap()), avatar_url: None };
    store.update_user_profile(user.id, &patch).await.unwrap();
    let patch =
        ProfilePatch { nickname: None, avatar_url: Some(AvatarUrl::parse("https://example.com/a.png").unwrap()) };

    let updated = store.update_user_profile(user.id, &patch).await.unwrap().unwrap();

    assert_eq!(updated.nickname.unwrap().as_str(), "小明");
    assert_eq!(updated.avatar_url.unwrap().as_str(), "https://example.com/a.png");
    assert!(store.update_user_profile(UserId::new(), &patch).await.unwrap().is_none());
}

async fn conversations_list_newest_activity_first_with_a_cursor(store: DynStore) {
    let user = UserId::new();
    let base = now();
    let mut created = Vec::new();
    // Another user's conversations at the same instants must never leak into the pages.
    for i in 0..5 {
        store.insert_conversation(&conversation(UserId::new(), "theirs", base + Duration::seconds(i))).await.unwrap();
    }
    for i in 0..5 {
        // Two share a timestamp, so the id must break the tie.
        let at = base + Duration::seconds(if i == 3 { 2 } else { i });
        let c = conversation(user, &format!("c{i}"), at);
        store.insert_conversation(&c).await.unwrap();
        created.push(c);
    }

    let first_page = store.list_conversations(user, 2, None).await.unwrap();
    let cursor = ConversationCursor::after(first_page.last().unwrap());
    let decoded = ConversationCursor::decode(&cursor.encode()).unwrap();
    let second_page = store.list_conversations(user, 2, Some(&decoded)).await.unwrap();
    let cursor = ConversationCursor::after(second_page.last().unwrap());
    let third_page = store.list_conversations(user, 2, Some(&cursor)).await.unwrap();

    let titles: Vec<String> =
        first_page.iter().chain(&second_page).chain(&third_page).map(|c| c.title.as_str().to_string()).collect();
    assert_eq!(titles, ["c4", "c3", "c2", "c1", "c0"]);
    assert_eq!(third_page.len(), 1);
    assert_eq!(first_page[0], created[4]);
}

async fn conversations_are_private_to_their_owner(store: DynStore) {
    let (owner, stranger) = (UserId::new(), UserId::new());
    let c = conversation(owner, "mine", now());
    store.insert_conversation(&c).await.unwrap();
    let title = ConversationTitle::parse("stolen").unwrap();

    assert!(store.get_conversation(stranger, c.id).await.unwrap().is_none());
    assert!(store.rename_conversation(stranger, c.id, &title).await.unwrap().is_none());
    assert!(!store.delete_conversation(stranger, c.id).await.unwrap());
    assert!(store.list_conversations(stranger, 10, None).await.unwrap().is_empty());
    assert_eq!(
        store.claim_generation(stranger, c.id, MessageId::new(), now(), now()).await.unwrap(),
        GenerationClaim::NoSuchConversation
    );
    assert_eq!(store.get_conversation(owner, c.id).await.unwrap().unwrap().title.as_str(), "mine");
}

async fn deleting_a_conversation_removes_its_messages(store: DynStore) {
    let user = UserId::new();
    let doomed = conversation(user, "doomed", now());
    let kept = conversation(user, "kept", now());
    store.insert_conversation(&doomed).await.unwrap();
    store.insert_conversation(&kept).await.unwrap();
    let gone = message(&doomed, Role::User, "bye");
    store.insert_message(&gone).await.unwrap();
    store.insert_message(&message(&kept, Role::User, "hi")).await.unwrap();

    assert!(store.delete_conversation(user, doomed.id).await.unwrap());

    assert!(store.get_conversation(user, doomed.id).await.unwrap().is_none());
    assert!(store.get_message(doomed.id, gone.id).await.unwrap().is_none());
    assert!(store.list_messages(doomed.id, 10, None).await.unwrap().is_empty());
    assert_eq!(store.list_messages(kept.id, 10, None).await.unwrap().len(), 1);
    assert!(!store.delete_conversation(user, doomed.id).await.unwrap());
}

async fn messages_list_chronologically_and_page_backwards(store: DynStore) {
    let c = conversation(UserId::new(), "chat", now());
    let other = conversation(UserId::new(), "other", now());
    store.insert_conversation(&c).await.unwrap();
    store.insert_conversation(&other).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let role = if i % 2 == 0 { Role::User } else { Role::Assistant };
        // Interleaved with another conversation's messages, which must never show up.
        store.insert_message(&message(&other, role, "not yours")).await.unwrap();
        let m = message(&c, role, &format!("m{i}"));
        store.insert_message(&m).await.unwrap();
        ids.push(m.id);
    }

    let newest = store.list_messages(c.id, 2, None).await.unwrap();
    let older = store.list_messages(c.id, 2, Some(newest[0].id)).await.unwrap();
    let oldest = store.list_messages(c.id, 2, Some(older[0].id)).await.unwrap();

    let contents = |ms: &[Message]| ms.iter().map(|m| m.content.clone()).collect::<Vec<_>>();
    assert_eq!(contents(&newest), ["m3", "m4"]);
    assert_eq!(contents(&older), ["m1", "m2"]);
    assert_eq!(contents(&oldest), ["m0"]);
    assert_eq!(store.get_message(c.id, ids[1]).await.unwrap().unwrap().role, Role::Assistant);
    assert!(store.get_message(ConversationId::new(), ids[1]).await.unwrap().is_none());
}

async fn progress_is_saved_and_read_back(store: DynStore) {
    let c = conversation(UserId::new(), "chat", now());
    store.insert_conversation(&c).await.unwrap();
    let mut reply = message(&c, Role::Assistant, "");
    reply.status = MessageStatus::Streaming;
    store.insert_message(&reply).await.unwrap();
    let progress = MessageProgress {
        content: "你好，世界".into(),
        reasoning_content: Some("想一想".into()),
        status: MessageStatus::Incomplete,
        usage: Some(Usage { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15, ..Default::default() }),
        finish_reason: None,
        error: Some(MessageError { code: "upstream_disconnected".into(), message: "lost".into(), label: None }),
        served: Some(Served { upstream: "deepseek".into(), model: Some("deepseek-flash".into()) }),
    };

    store.save_progress(reply.id, &progress, now()).await.unwrap();

    let stored = store.get_message(c.id, reply.id).await.unwrap().unwrap();
    assert_eq!(stored.content, "你好，世界");
    assert_eq!(stored.reasoning_content.as_deref(), Some("想一想"));
    assert_eq!(stored.status, MessageStatus::Incomplete);
    assert_eq!(stored.usage.unwrap().total_tokens, 15);
    assert_eq!(stored.error.unwrap().code, "upstream_disconnected");
    assert_eq!(stored.served.unwrap().model.as_deref(), Some("deepseek-flash"));
}

async fn only_one_generation_claims_a_conversation_until_released_or_expired(store: DynStore) {
    let user = UserId::new();
    let c = conversation(user, "chat", now());
    let neighbour = conversation(user, "neighbour", now());
    store.insert_conversation(&c).await.unwrap();
    store.insert_conversation(&neighbour).await.unwrap();
    let (first, second, third) = (MessageId::new(), MessageId::new(), MessageId::new());
    let t0 = now();

    let claimed = store.claim_generation(user, c.id, first, t0, t0 + Duration::seconds(60)).await.unwrap();
    let blocked = store.claim_generation(user, c.id, second, t0, t0 + Duration::seconds(60)).await.unwrap();
    // A release by the wrong message does nothing.
    store.release_generation(c.id, second, t0).await.unwrap();
    let still_blocked = store.claim_generation(user, c.id, second, t0, t0 + Duration::seconds(60)).await.unwrap();
    store.release_generation(c.id, first, t0).await.unwrap();
    let after_release = store.claim_generation(user, c.id, second, t0, t0 + Duration::seconds(1)).await.unwrap();
    // The second claim's lease runs out; a later claim takes over.
    let after_expiry =
        store.claim_generation(user, c.id, third, t0 + Duration::seconds(5), t0 + Duration::seconds(65)).await.unwrap();

    // Claims are per conversation: the neighbour is free and claiming it leaves `c` alone.
    let neighbour_claim =
        store.claim_generation(user, neighbour.id, MessageId::new(), t0, t0 + Duration::seconds(60)).await.unwrap();
    assert_eq!(neighbour_claim, GenerationClaim::Claimed);
    assert_eq!(claimed, GenerationClaim::Claimed);
    assert_eq!(blocked, GenerationClaim::Busy { holder: first, until: t0 + Duration::seconds(60) });
    assert_eq!(still_blocked, GenerationClaim::Busy { holder: first, until: t0 + Duration::seconds(60) });
    assert_eq!(after_release, GenerationClaim::Claimed);
    assert_eq!(after_expiry, GenerationClaim::Claimed);
}

async fn a_renewed_lease_holds_past_its_first_expiry_and_only_its_holder_renews(store: DynStore) {
    let user = UserId::new();
    let c = conversation(user, "lease", now());
    store.insert_conversation(&c).await.unwrap();
    let (holder, intruder) = (MessageId::new(), MessageId::new());
    let t0 = now();
    store.claim_generation(user, c.id, holder, t0, t0 + Duration::seconds(10)).await.unwrap();

    store.renew_generation(c.id, holder, t0 + Duration::seconds(60)).await.unwrap();
    // Past the first expiry, inside the renewed one: still held.
    let during = store.claim_generation(user, c.id, intruder, t0 + Duration::seconds(30), t0 + Duration::seconds(90));
    let during = during.await.unwrap();
    // Renewing by another message changes nothing: after the holder's lease, it is free.
    store.renew_generation(c.id, intruder, t0 + Duration::seconds(600)).await.unwrap();
    let after = store.claim_generation(user, c.id, intruder, t0 + Duration::seconds(61), t0 + Duration::seconds(120));
    let after = after.await.unwrap();

    assert_eq!(during, GenerationClaim::Busy { holder, until: t0 + Duration::seconds(60) });
    assert_eq!(after, GenerationClaim::Claimed);
}

async fn abandoned_streaming_replies_are_interrupted_but_final_ones_and_the_new_one_are_not(store: DynStore) {
    let user = UserId::new();
    let c = conversation(user, "abandoned", now());
    let other = conversation(user, "other", now());
    store.insert_conversation(&c).await.unwrap();
    store.insert_conversation(&other).await.unwrap();
    let streaming = |conv: &Conversation, text: &str| {
        let mut m = message(conv, Role::Assistant, text);
        m.status = MessageStatus::Streaming;
        m
    };
    let (dead, silent, finished, fresh, elsewhere) = (
        streaming(&c, "半句"),
        streaming(&c, ""),
        message(&c, Role::Assistant, "完整"),
        streaming(&c, ""),
        streaming(&other, "别处"),
    );
    for m in [&dead, &silent, &finished, &fresh, &elsewhere] {
        store.insert_message(m).await.unwrap();
    }

    let marked = store.interrupt_abandoned_replies(c.id, fresh.id, now()).await.unwrap();

    let read = |id| {
        let store = store.clone();
        async move { store.get_message(c.id, id).await.unwrap().unwrap() }
    };
    let dead = read(dead.id).await;
    assert_eq!(marked, 2);
    let silent = read(silent.id).await;
    assert_eq!(silent.status, MessageStatus::Failed, "nothing received: failed, not incomplete");
    assert_eq!(silent.error.unwrap().code, "generation_interrupted");
    assert_eq!(dead.status, MessageStatus::Incomplete);
    assert_eq!(dead.error.unwrap().code, "generation_interrupted");
    assert_eq!(dead.content, "半句", "the part received is kept");
    assert_eq!(read(finished.id).await.status, MessageStatus::Complete);
    assert_eq!(read(fresh.id).await.status, MessageStatus::Streaming);
    let elsewhere = store.get_message(other.id, elsewhere.id).await.unwrap().unwrap();
    assert_eq!(elsewhere.status, MessageStatus::Streaming, "other conversations are not touched");
}

async fn counters_add_up_per_key_and_concurrently(store: DynStore) {
    let until = now() + Duration::seconds(120);
    let key = format!("k:{}", MessageId::new());
    let other = format!("k:{}", MessageId::new());

    let increments = (0..8).map(|_| {
        let store = store.clone();
        let key = key.clone();
        async move { store.increment_counter(&key, 1, until).await.unwrap() }
    });
    let mut seen = futures_util::future::join_all(increments).await;
    let by_five = store.increment_counter(&key, 5, until).await.unwrap();
    store.increment_counter(&other, 2, until).await.unwrap();

    seen.sort();
    assert_eq!(seen, (1..=8).collect::<Vec<i64>>(), "every concurrent increment counted once");
    assert_eq!(by_five, 13);
    assert_eq!(store.read_counter(&key).await.unwrap(), 13);
    assert_eq!(store.read_counter(&other).await.unwrap(), 2);
    assert_eq!(store.read_counter("k:never").await.unwrap(), 0);
}

async fn an_expired_counter_reads_zero_and_counts_again_from_zero(store: DynStore) {
    let key = format!("k:{}", MessageId::new());
    store.increment_counter(&key, 7, now() + Duration::milliseconds(300)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;

    let read = store.read_counter(&key).await.unwrap();
    let restarted = store.increment_counter(&key, 1, now() + Duration::seconds(60)).await.unwrap();

    assert_eq!(read, 0, "expired");
    assert_eq!(restarted, 1, "counting starts again");
    assert_eq!(store.read_counter(&key).await.unwrap(), 1);
}

async fn a_final_reply_never_changes_again(store: DynStore) {
    let c = conversation(UserId::new(), "final", now());
    store.insert_conversation(&c).await.unwrap();
    let mut reply = message(&c, Role::Assistant, "");
    reply.status = MessageStatus::Streaming;
    store.insert_message(&reply).await.unwrap();
    let progress = |content: &str, status| MessageProgress {
        content: content.into(),
        reasoning_content: None,
        status,
        usage: None,
        finish_reason: None,
        error: None,
        served: None,
    };

    let streaming = store.save_progress(reply.id, &progress("一", MessageStatus::Streaming), now()).await.unwrap();
    let finished = store.save_progress(reply.id, &progress("一二", MessageStatus::Complete), now()).await.unwrap();
    let late = store.save_progress(reply.id, &progress("改", MessageStatus::Incomplete), now()).await.unwrap();

    assert!(streaming && finished);
    assert!(!late, "a save after the final one is refused");
    let stored = store.get_message(c.id, reply.id).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.content.as_str()), (MessageStatus::Complete, "一二"));
}

fn streaming(content: &str) -> MessageProgress {
    MessageProgress {
        content: content.into(),
        reasoning_content: None,
        status: MessageStatus::Streaming,
        usage: None,
        finish_reason: None,
        error: None,
        served: Some(Served { upstream: "deepseek".into(), model: None }),
    }
}

async fn many_replies_progress_is_saved_in_one_call_except_cancelled_or_final_ones(store: DynStore) {
    let c = conversation(UserId::new(), "bulk", now());
    store.insert_conversation(&c).await.unwrap();
    let mut replies = Vec::new();
    for _ in 0..5 {
        let mut reply = message(&c, Role::Assistant, "");
        reply.status = MessageStatus::Streaming;
        store.insert_message(&reply).await.unwrap();
        replies.push(reply.id);
    }
    // The third was cancelled by its owner, the fourth already ended.
    assert!(store.request_cancel(c.id, replies[2]).await.unwrap());
    let mut ended = streaming("结束了");
    ended.status = MessageStatus::Complete;
    // Ended in the same millisecond as the bulk save: still refused.
    let at = now();
    assert!(store.save_progress(replies[3], &ended, at).await.unwrap());
    let saves: Vec<(MessageId, MessageProgress)> =
        replies.iter().enumerate().map(|(i, id)| (*id, streaming(&format!("第{i}条")))).collect();

    let saved = store.save_progress_many(&saves, at).await.unwrap();

    assert_eq!(saved, vec![true, true, false, false, true]);
    for (i, id) in replies.iter().enumerate() {
        let stored = store.get_message(c.id, *id).await.unwrap().unwrap();
        let expected = match i {
            2 => "",
            3 => "结束了",
            _ => &format!("第{i}条"),
        };
        assert_eq!(stored.content, expected, "reply {i}");
    }
    let first = store.get_message(c.id, replies[0]).await.unwrap().unwrap();
    assert_eq!(first.status, MessageStatus::Streaming);
    assert_eq!(first.served.map(|s| s.upstream).as_deref(), Some("deepseek"));
    assert!(store.save_progress_many(&[], now()).await.unwrap().is_empty());
}

async fn many_leases_are_renewed_in_one_call_only_for_their_holders(store: DynStore) {
    let user = UserId::new();
    let t0 = now();
    let mut held = Vec::new();
    for i in 0..3 {
        let c = conversation(user, &format!("lease{i}"), t0);
        store.insert_conversation(&c).await.unwrap();
        let holder = MessageId::new();
        store.claim_generation(user, c.id, holder, t0, t0 + Duration::seconds(10)).await.unwrap();
        held.push((c.id, holder));
    }
    // The last one is renewed by a message that does not hold it: no effect.
    let mut leases = held.clone();
    leases[2].1 = MessageId::new();

    store.renew_generations(&leases, t0 + Duration::seconds(60)).await.unwrap();

    for (i, (id, holder)) in held.iter().enumerate() {
        let intruder = MessageId::new();
        let claim = store.claim_generation(user, *id, intruder, t0 + Duration::seconds(30), t0 + Duration::seconds(90));
        let expected = if i < 2 {
            GenerationClaim::Busy { holder: *holder, until: t0 + Duration::seconds(60) }
        } else {
            GenerationClaim::Claimed
        };
        assert_eq!(claim.await.unwrap(), expected, "conversation {i}");
    }
    store.renew_generations(&[], t0).await.unwrap();
}

fn fact(user: UserId, persona: &str, text: &str, learned_ms_ago: i64) -> MemoryFact {
    let mut fact = MemoryFact::new(user, persona, MemoryText::parse(text).unwrap(), None);
    fact.learned_at = now() - Duration::milliseconds(learned_ms_ago);
    fact.updated_at = fact.learned_at;
    fact
}

async fn memories_belong_to_one_user_and_persona_and_list_oldest_first(store: DynStore) {
    let (user, other) = (UserId::new(), UserId::new());
    let newer = fact(user, "xiaoxi", "在准备考研", 1_000);
    let mut older = fact(user, "xiaoxi", "养了一只叫咪咪的猫", 60_000);
    older.source_message_id = Some(MessageId::new());
    for f in
        [&newer, &older, &fact(user, "other-persona", "喜欢爬山", 5_000), &fact(other, "xiaoxi", "别人的事", 5_000)]
    {
        store.insert_memory(f).await.unwrap();
    }

    let listed = store.list_memories(user, "xiaoxi").await.unwrap();

    assert_eq!(listed, vec![older.clone(), newer.clone()]);
    assert!(store.list_memories(UserId::new(), "xiaoxi").await.unwrap().is_empty());
}

async fn a_memory_is_updated_and_deleted_only_by_its_owner(store: DynStore) {
    let (user, intruder) = (UserId::new(), UserId::new());
    let cat = fact(user, "xiaoxi", "养了一只猫", 2_000);
    let exam = fact(user, "xiaoxi", "在准备考研", 1_000);
    store.insert_memory(&cat).await.unwrap();
    store.insert_memory(&exam).await.unwrap();
    let renamed = MemoryText::parse("养了一只叫咪咪的猫").unwrap();
    let at = now();

    assert_eq!(store.update_memory(intruder, "xiaoxi", cat.id, &renamed, at).await.unwrap(), None);
    assert_eq!(store.update_memory(user, "other-persona", cat.id, &renamed, at).await.unwrap(), None);
    let updated = store.update_memory(user, "xiaoxi", cat.id, &renamed, at).await.unwrap().expect("updated");
    assert_eq!(updated.text, renamed);
    assert_eq!(updated.updated_at, at);
    assert_eq!(updated.learned_at, cat.learned_at);
    assert!(!store.delete_memory(intruder, "xiaoxi", exam.id).await.unwrap());
    assert!(store.delete_memory(user, "xiaoxi", exam.id).await.unwrap());
    assert!(!store.delete_memory(user, "xiaoxi", exam.id).await.unwrap());
    assert_eq!(store.list_memories(user, "xiaoxi").await.unwrap(), vec![updated]);
    store.insert_memory(&fact(user, "xiaoxi", "第三件事", 500)).await.unwrap();
    assert_eq!(store.delete_memories(intruder, "xiaoxi", now()).await.unwrap(), 0);
    assert_eq!(store.delete_memories(user, "xiaoxi", now()).await.unwrap(), 2);
    assert!(store.list_memories(user, "xiaoxi").await.unwrap().is_empty());
}

async fn a_memory_job_is_claimed_by_one_holder_until_its_lease_runs_out(store: DynStore) {
    let (user, conversation) = (UserId::new(), ConversationId::new());
    let t0 = now();
    store.schedule_memory_job(conversation, user, "xiaoxi", t0 + Duration::seconds(30)).await.unwrap();

    let early = store.claim_memory_job(t0, t0 + Duration::seconds(60)).await.unwrap();
    let first = store.claim_memory_job(t0 + Duration::seconds(31), t0 + Duration::seconds(91)).await.unwrap();
    let while_held = store.claim_memory_job(t0 + Duration::seconds(40), t0 + Duration::seconds(100)).await.unwrap();
    // The holder died: after its lease another replica takes the job over.
    let taken_over = store.claim_memory_job(t0 + Duration::seconds(92), t0 + Duration::seconds(150)).await.unwrap();

    assert_eq!(early, None, "not due yet");
    let first = first.expect("due and free");
    assert_eq!((first.conversation_id, first.user_id, first.persona_id.as_str()), (conversation, user, "xiaoxi"));
    assert_eq!(while_held, None, "one holder at a time");
    let taken_over = taken_over.expect("taken over after the lease");
    assert_eq!(taken_over.version, first.version);
    // The first holder wakes up late: its finish and release touch nothing of the new holder's.
    store.finish_memory_job(&first).await.unwrap();
    store.retry_memory_job(&first, t0).await.unwrap();
    let still_held = store.claim_memory_job(t0 + Duration::seconds(100), t0 + Duration::seconds(160)).await.unwrap();
    assert_eq!(still_held, None, "the late holder neither finished nor released the job");
    store.finish_memory_job(&taken_over).await.unwrap();
    assert_eq!(store.claim_memory_job(t0 + Duration::seconds(500), t0 + Duration::seconds(600)).await.unwrap(), None);
}

async fn a_memory_job_with_new_turns_outlives_the_run_that_missed_them(store: DynStore) {
    let (user, conversation) = (UserId::new(), ConversationId::new());
    let t0 = now();
    store.schedule_memory_job(conversation, user, "xiaoxi", t0).await.unwrap();
    let running = store.claim_memory_job(t0, t0 + Duration::seconds(60)).await.unwrap().expect("claimed");
    // A new turn arrives while it runs (debounced to later); the running lease stands.
    store.schedule_memory_job(conversation, user, "xiaoxi", t0 + Duration::seconds(10)).await.unwrap();
    let during = store.claim_memory_job(t0 + Duration::seconds(20), t0 + Duration::seconds(80)).await.unwrap();

    store.finish_memory_job(&running).await.unwrap();
    let again = store.claim_memory_job(t0 + Duration::seconds(20), t0 + Duration::seconds(80)).await.unwrap();

    assert_eq!(during, None, "a new turn does not free a running job");
    let again = again.expect("the new turns are still to be learned from");
    assert!(again.version > running.version);
    store.finish_memory_job(&again).await.unwrap();
    assert_eq!(store.claim_memory_job(t0 + Duration::seconds(500), t0 + Duration::seconds(600)).await.unwrap(), None);
}

async fn a_failed_memory_job_counts_its_attempts_and_waits(store: DynStore) {
    let (user, conversation) = (UserId::new(), ConversationId::new());
    let t0 = now();
    store.schedule_memory_job(conversation, user, "xiaoxi", t0).await.unwrap();
    let first = store.claim_memory_job(t0, t0 + Duration::seconds(60)).await.unwrap().expect("claimed");

    store.retry_memory_job(&first, t0 + Duration::seconds(30)).await.unwrap();
    let too_soon = store.claim_memory_job(t0 + Duration::seconds(5), t0 + Duration::seconds(65)).await.unwrap();
    let second = store.claim_memory_job(t0 + Duration::seconds(30), t0 + Duration::seconds(90)).await.unwrap();

    assert_eq!(first.attempts, 0);
    assert_eq!(too_soon, None, "released, but not due again yet");
    assert_eq!(second.expect("due again").attempts, 1);
    // A new turn resets the attempts.
    store.schedule_memory_job(conversation, user, "xiaoxi", t0).await.unwrap();
    store.retry_memory_job(&first, t0).await.unwrap();
    let fresh = store.claim_memory_job(t0 + Duration::seconds(200), t0 + Duration::seconds(260)).await.unwrap();
    assert_eq!(fresh.expect("due").attempts, 0);
}

async fn a_summary_is_replaced_only_by_one_reaching_further(store: DynStore) {
    let user = UserId::new();
    let (c, other) = (conversation(user, "summary", now()), conversation(UserId::new(), "another's", now()));
    store.insert_conversation(&other).await.unwrap();
    store.insert_conversation(&c).await.unwrap();
    let summary = |text: &str, through_millis: i64| ConversationSummary {
        text: SummaryText::parse(text).unwrap(),
        through: MessageId::new(),
        through_at: chrono::DateTime::from_timestamp_millis(1_800_000_000_000 + through_millis).unwrap(),
        updated_at: now(),
    };
    let (first, further, stale) = (summary("第一段", 10), summary("第二段\n接着聊", 20), summary("过时的", 15));

    assert!(store.save_summary(c.id, &first).await.unwrap());
    assert!(store.save_summary(c.id, &further).await.unwrap());
    assert!(!store.save_summary(c.id, &stale).await.unwrap(), "a late writer never undoes a newer summary");
    assert!(!store.save_summary(c.id, &further).await.unwrap(), "not again for the same turns");
    assert!(!store.save_summary(ConversationId::new(), &first).await.unwrap(), "no such conversation");
    let stored = store.get_conversation(user, c.id).await.unwrap().unwrap();
    assert_eq!(stored.summary, Some(further));
    let untouched = store.get_conversation(other.user_id, other.id).await.unwrap().unwrap();
    assert_eq!(untouched.summary, None, "only that conversation's summary changes");
}

async fn what_memory_learned_through_only_moves_forward_and_forgetting_all_moves_it(store: DynStore) {
    let user = UserId::new();
    let (a, b) = (conversation(user, "a", now()), conversation(user, "b", now()));
    let mut other_persona = conversation(user, "c", now());
    other_persona.persona_id = "ahang".into();
    for c in [&a, &b, &other_persona] {
        store.insert_conversation(c).await.unwrap();
    }
    let at = |millis: i64| chrono::DateTime::from_timestamp_millis(1_800_000_000_000 + millis).unwrap();
    let learned = |id| {
        let store = store.clone();
        async move { store.get_conversation(user, id).await.unwrap().unwrap().learned_through }
    };

    store.mark_learned(a.id, at(20)).await.unwrap();
    store.mark_learned(a.id, at(10)).await.unwrap();
    assert_eq!(learned(a.id).await, Some(at(20)), "never moves back");
    store.delete_memories(user, "xiaoxi", at(30)).await.unwrap();
    assert_eq!(learned(a.id).await, Some(at(30)));
    assert_eq!(learned(b.id).await, Some(at(30)), "every conversation with the persona");
    assert_eq!(learned(other_persona.id).await, None, "not another persona's");
}

async fn the_persona_catalog_is_replaced_only_from_the_revision_it_was_read_at(store: DynStore) {
    let seed = companion_backend::chat::Personas::built_in().all().to_vec();
    let mut edited = seed.clone();
    edited[0].system_prompt = "改过的提示词".into();

    assert_eq!(store.load_personas().await.unwrap(), (0, vec![]), "nothing until seeded");
    assert!(store.save_personas(&seed, 0).await.unwrap());
    assert!(!store.save_personas(&seed, 0).await.unwrap(), "seeded once");
    assert!(store.save_personas(&edited, 1).await.unwrap());
    assert!(!store.save_personas(&seed, 1).await.unwrap(), "a save from a stale revision loses");
    assert_eq!(store.load_personas().await.unwrap(), (2, edited));
}

fn at_ms(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
}

async fn pending_notices_and_activity_are_kept_per_user_and_acknowledged_only_at_their_version(store: DynStore) {
    use companion_backend::domain::{Activity, NoticeKind, PendingNotice};
    use companion_backend::store::UserSafetyUpdate;
    let user = store.find_or_create_user(&OpenId::parse("o_notices").unwrap()).await.unwrap();
    let notice = |kind, version: &str| PendingNotice { kind, version: version.into(), since: at_ms(0) };
    let activity = Activity { session_start: at_ms(0), last: at_ms(60_000), reminded_session: Some(at_ms(0)) };
    let first = UserSafetyUpdate {
        notices: vec![notice(NoticeKind::UsageReminder, "r1"), notice(NoticeKind::AiDisclosure, "a1")],
        activity: Some(activity),
    };
    store.update_user_safety(user.id, &first).await.unwrap();
    let replaced = UserSafetyUpdate { notices: vec![notice(NoticeKind::AiDisclosure, "a2")], activity: None };
    store.update_user_safety(user.id, &replaced).await.unwrap();

    let stale = store.acknowledge_notice(user.id, NoticeKind::AiDisclosure, "a1").await.unwrap();
    let read = store.get_user(user.id).await.unwrap().unwrap();
    let acknowledged = store.acknowledge_notice(user.id, NoticeKind::AiDisclosure, "a2").await.unwrap();
    let again = store.acknowledge_notice(user.id, NoticeKind::AiDisclosure, "a2").await.unwrap();
    let after = store.get_user(user.id).await.unwrap().unwrap();

    assert!(!stale, "an older version is not the pending one");
    let pending: Vec<(NoticeKind, &str)> = read.notices.iter().map(|n| (n.kind, n.version.as_str())).collect();
    assert_eq!(
        pending,
        [(NoticeKind::AiDisclosure, "a2"), (NoticeKind::UsageReminder, "r1")],
        "one per kind, in order"
    );
    assert_eq!(read.activity, Some(activity), "kept by a later update without activity");
    assert!(acknowledged && !again, "acknowledged once");
    assert_eq!(after.notices.len(), 1);
    assert_eq!(after.notices[0].kind, NoticeKind::UsageReminder);
}

async fn minor_mode_and_its_consent_round_trip(store: DynStore) {
    use companion_backend::domain::{GuardianConsent, MinorMode};
    let user = store.find_or_create_user(&OpenId::parse("o_minor").unwrap()).await.unwrap();
    let consent = GuardianConsent { by: "admin".into(), at: at_ms(5), note: "电话核实".into() };
    let mode = MinorMode { since: at_ms(1), guardian_consent: Some(consent) };

    let set = store.set_minor_mode(user.id, Some(&mode)).await.unwrap();
    let read = store.get_user(user.id).await.unwrap().unwrap().minor_mode;
    store.set_minor_mode(user.id, None).await.unwrap();
    let off = store.get_user(user.id).await.unwrap().unwrap().minor_mode;
    let nobody = store.set_minor_mode(UserId::new(), Some(&mode)).await.unwrap();

    assert!(set);
    assert_eq!(read, Some(mode));
    assert_eq!(off, None);
    assert!(!nobody, "no such user");
}

async fn takeovers_and_crisis_flags_are_kept_and_the_crisis_queue_lists_newest_first(store: DynStore) {
    use companion_backend::domain::{CrisisFlag, Takeover};
    let user = UserId::new();
    let (older, newer, calm) =
        (conversation(user, "a", now()), conversation(user, "b", now()), conversation(user, "c", now()));
    for c in [&older, &newer, &calm] {
        store.insert_conversation(c).await.unwrap();
    }
    let flag = |ms, by: &str| CrisisFlag { at: at_ms(ms), detected_by: by.into(), handled_at: None };
    store.flag_crisis(older.id, &flag(1_000, "phrase:想死")).await.unwrap();
    store.flag_crisis(newer.id, &flag(2_000, "classifier")).await.unwrap();
    let takeover = Takeover { by: "admin".into(), at: at_ms(3_000) };
    store.set_takeover(older.id, Some(&takeover)).await.unwrap();

    let taken = store.find_conversation(older.id).await.unwrap().unwrap();
    let queue: Vec<ConversationId> = store.list_crisis_conversations(10).await.unwrap().iter().map(|c| c.id).collect();
    store.set_takeover(older.id, None).await.unwrap();
    let released = store.find_conversation(older.id).await.unwrap().unwrap();
    let missing = store.set_takeover(ConversationId::new(), Some(&takeover)).await.unwrap();

    assert_eq!(taken.takeover, Some(takeover));
    assert_eq!(taken.crisis.as_ref().unwrap().detected_by, "phrase:想死");
    assert_eq!(queue, [newer.id, older.id], "flagged only, newest flag first");
    assert_eq!(released.takeover, None);
    assert!(released.crisis.unwrap().handled_at.is_some(), "a release marks the crisis handled");
    assert!(!missing);
}

async fn safety_events_list_newest_first_per_user(store: DynStore) {
    use companion_backend::domain::{SafetyEvent, SafetyEventKind};
    let (one, other) = (UserId::new(), UserId::new());
    let event =
        |user, kind, ms| SafetyEvent { at: at_ms(ms), user_id: user, conversation_id: None, kind, detail: None };
    store.record_safety_event(&event(one, SafetyEventKind::NoticeIssued, 1)).await.unwrap();
    store.record_safety_event(&event(other, SafetyEventKind::ExitPhrase, 2)).await.unwrap();
    store.record_safety_event(&event(one, SafetyEventKind::NoticeAcknowledged, 3)).await.unwrap();

    let mine: Vec<SafetyEventKind> =
        store.list_safety_events(Some(one), 10).await.unwrap().iter().map(|e| e.kind).collect();
    let all = store.list_safety_events(None, 10).await.unwrap();

    assert_eq!(mine, [SafetyEventKind::NoticeAcknowledged, SafetyEventKind::NoticeIssued]);
    assert_eq!(all.len(), 3);
}
