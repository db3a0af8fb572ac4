//! The handoff ceiling's actor: the global-lock baseline behind one `ractor`
//! actor, for the row `append_sequential_handoff_ceiling`.

use std::sync::Arc;

use process_registry::{ProcessEventAppendRequest, ProcessEventAppendResult, ProcessRegistry, RegistryError};

use crate::Result;

/// The handoff ceiling: the global-lock baseline behind one `ractor` actor.
///
/// Each append is a message to an actor that calls the baseline and replies
/// with its answer: exactly the baseline's work plus the one handoff per
/// call that the design requires (a facade that sends each call to the
/// process's actor and awaits the reply). No registry built that way can
/// append faster on this machine and runtime, so this row's ratio to the
/// bare baseline bounds the `append, 1 process sequential` ratio.
pub struct Forwarder {
    actor: ractor::ActorRef<ForwardedAppend>,
}

/// One append handed to the [`Forwarder`].
struct ForwardedAppend {
    process_id: Arc<str>,
    request: ProcessEventAppendRequest,
    reply: ractor::RpcReplyPort<Result<ProcessEventAppendResult, RegistryError>>,
}

/// The forwarding actor: it owns nothing but the registry it calls.
struct ForwardingActor {
    registry: Arc<dyn ProcessRegistry>,
}

impl ractor::Actor for ForwardingActor {
    type Msg = ForwardedAppend;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ractor::ActorRef<Self::Msg>,
        _args: Self::Arguments,
    ) -> Result<Self::State, ractor::ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ractor::ActorRef<Self::Msg>,
        message: Self::Msg,
        _state: &mut Self::State,
    ) -> Result<(), ractor::ActorProcessingErr> {
        let result = self.registry.append_event(&message.process_id, message.request).await;
        // The driver awaits every reply; a dropped one fails its round.
        let _ = message.reply.send(result);
        Ok(())
    }
}

impl Forwarder {
    pub async fn start(registry: Arc<dyn ProcessRegistry>) -> Result<Self> {
        let (actor, _) = ractor::Actor::spawn(None, ForwardingActor { registry }, ())
            .await
            .map_err(|err| format!("starting the forwarding actor: {err}"))?;
        Ok(Self { actor })
    }

    pub async fn append(
        &self,
        process_id: &Arc<str>,
        request: ProcessEventAppendRequest,
    ) -> Result<ProcessEventAppendResult, RegistryError> {
        let sent = Arc::clone(process_id);
        match self.actor.call(|reply| ForwardedAppend { process_id: sent, request, reply }, None).await {
            Ok(ractor::rpc::CallResult::Success(result)) => result,
            _ => Err(RegistryError::Stopped { process_id: process_id.to_string() }),
        }
    }

    /// Stops the forwarding actor.
    pub fn stop(&self) {
        self.actor.stop(None);
    }
}
