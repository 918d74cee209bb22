//! The method names, and the traits that tie a method to its parameters and its result.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Every method `chorusd` serves, named as on the wire. The server registers exactly these;
/// clients call them by these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    ChainGetHead,
    ChainGetBlock,
    ChainGetFinalized,
    StateGetAccount,
    TxSubmit,
    TxGet,
    NodeStatus,
    NodePeers,
    ChainSubscribeHeads,
    ChainUnsubscribeHeads,
    ChainSubscribeFinalized,
    ChainUnsubscribeFinalized,
    ConsensusValidators,
    AdminBanPeer,
    AdminUnbanPeer,
    AdminRaftAddLearner,
    AdminRaftPromote,
    AdminRaftRemove,
    RpcDiscover,
}

impl Method {
    /// Every method, in the order `rpc.discover` lists them.
    pub const ALL: [Method; 19] = [
        Method::ChainGetHead,
        Method::ChainGetBlock,
        Method::ChainGetFinalized,
        Method::StateGetAccount,
        Method::TxSubmit,
        Method::TxGet,
        Method::NodeStatus,
        Method::NodePeers,
        Method::ChainSubscribeHeads,
        Method::ChainUnsubscribeHeads,
        Method::ChainSubscribeFinalized,
        Method::ChainUnsubscribeFinalized,
        Method::ConsensusValidators,
        Method::AdminBanPeer,
        Method::AdminUnbanPeer,
        Method::AdminRaftAddLearner,
        Method::AdminRaftPromote,
        Method::AdminRaftRemove,
        Method::RpcDiscover,
    ];

    /// The name on the wire.
    pub const fn name(self) -> &'static str {
        match self {
            Method::ChainGetHead => "chain_getHead",
            Method::ChainGetBlock => "chain_getBlock",
            Method::ChainGetFinalized => "chain_getFinalized",
            Method::StateGetAccount => "state_getAccount",
            Method::TxSubmit => "tx_submit",
            Method::TxGet => "tx_get",
            Method::NodeStatus => "node_status",
            Method::NodePeers => "node_peers",
            Method::ChainSubscribeHeads => "chain_subscribeHeads",
            Method::ChainUnsubscribeHeads => "chain_unsubscribeHeads",
            Method::ChainSubscribeFinalized => "chain_subscribeFinalized",
            Method::ChainUnsubscribeFinalized => "chain_unsubscribeFinalized",
            Method::ConsensusValidators => "consensus_validators",
            Method::AdminBanPeer => "admin_banPeer",
            Method::AdminUnbanPeer => "admin_unbanPeer",
            Method::AdminRaftAddLearner => "admin_raftAddLearner",
            Method::AdminRaftPromote => "admin_raftPromote",
            Method::AdminRaftRemove => "admin_raftRemove",
            Method::RpcDiscover => "rpc.discover",
        }
    }

    /// An admin method: served only on loopback, to callers with the node's admin token.
    pub const fn is_admin(self) -> bool {
        matches!(
            self,
            Method::AdminBanPeer
                | Method::AdminUnbanPeer
                | Method::AdminRaftAddLearner
                | Method::AdminRaftPromote
                | Method::AdminRaftRemove
        )
    }

    /// The method of a wire name; `None` for a name `chorusd` does not serve.
    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|method| method.name() == name)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A call's parameters: serialized, they are the JSON array of positional parameters the
/// server reads (optional trailing ones left out when absent). `Response` is what the method
/// answers.
pub trait Request: Serialize {
    const METHOD: Method;
    type Response: Serialize + DeserializeOwned;
}

/// A subscription: the method that opens it (no parameters; it answers a subscription id),
/// the one that closes it (the id; answers a boolean), and the notifications in between.
pub trait Subscription {
    const SUBSCRIBE: Method;
    const UNSUBSCRIBE: Method;
    /// The `method` field of each notification.
    const NOTIFICATION: &'static str;
    /// Each notification's `params.result`.
    type Item: Serialize + DeserializeOwned;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_map_back() {
        for method in Method::ALL {
            assert_eq!(Method::from_name(method.name()), Some(method));
        }
        let mut names: Vec<&str> = Method::ALL.iter().map(|method| method.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Method::ALL.len());
        assert_eq!(Method::from_name("eth_call"), None);
    }
}
