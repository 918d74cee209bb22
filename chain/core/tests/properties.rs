//! Property tests: encode/decode round trips, and no decoder panics on any input.

use chorus_chain::block::Block;
use chorus_chain::codec::{self, Canonical, CodecError};
use chorus_chain::crypto::{Address, Signature};
use chorus_chain::header::{Header, Seal};
use chorus_chain::primitives::{Amount, ChainId, Hash, Height, Timestamp};
use chorus_chain::state::{Account, StateKey, Unbonding};
use chorus_chain::tx::{Checkpoint, Evidence, SignedTransaction, Transaction, TxKind, Vote};
use proptest::prelude::*;

fn address() -> impl Strategy<Value = Address> {
    any::<[u8; 32]>().prop_map(Address)
}

fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

fn amount() -> impl Strategy<Value = Amount> {
    any::<u128>().prop_map(Amount::new)
}

fn signature() -> impl Strategy<Value = Signature> {
    (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(a, b)| {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&a);
        bytes[32..].copy_from_slice(&b);
        Signature(bytes)
    })
}

fn header() -> impl Strategy<Value = Header> {
    let seal = prop_oneof![
        Just(Seal::None),
        (hash(), any::<u64>()).prop_map(|(target, nonce)| Seal::Pow { target, nonce }),
        (any::<u64>(), signature()).prop_map(|(slot, signature)| Seal::Signed { slot, signature }),
    ];
    (hash(), any::<u64>(), any::<u64>(), hash(), hash(), hash(), address(), seal).prop_map(
        |(parent, height, timestamp, txs_root, votes_root, state_root, proposer, seal)| Header {
            parent,
            height: Height::new(height),
            timestamp: Timestamp::from_millis(timestamp),
            txs_root,
            votes_root,
            state_root,
            proposer,
            seal,
        },
    )
}

fn checkpoint() -> impl Strategy<Value = Checkpoint> {
    (any::<u64>(), any::<u64>(), hash()).prop_map(|(height, slot, hash)| Checkpoint {
        height: Height::new(height),
        slot,
        hash,
    })
}

fn vote() -> impl Strategy<Value = Vote> {
    (address(), checkpoint(), checkpoint(), signature()).prop_map(|(voter, source, target, signature)| Vote {
        voter,
        source,
        target,
        signature,
    })
}

fn kind() -> impl Strategy<Value = TxKind> {
    prop_oneof![
        (address(), amount()).prop_map(|(to, amount)| TxKind::Transfer { to, amount }),
        amount().prop_map(|amount| TxKind::Stake { amount }),
        amount().prop_map(|amount| TxKind::Unstake { amount }),
        Just(TxKind::RegisterDelegate),
        prop::collection::vec(address(), 0..31).prop_map(|delegates| TxKind::Vote { delegates }),
        (vote(), vote()).prop_map(|(first, second)| TxKind::Evidence(Box::new(Evidence::DoubleVote { first, second }))),
        (header(), header())
            .prop_map(|(first, second)| TxKind::Evidence(Box::new(Evidence::DoubleProposal { first, second }))),
    ]
}

fn signed_tx() -> impl Strategy<Value = SignedTransaction> {
    ("[a-z0-9]{1,32}", address(), any::<u64>(), amount(), kind(), signature()).prop_map(
        |(chain, sender, nonce, fee, kind, signature)| SignedTransaction {
            tx: Transaction { chain_id: ChainId::new(&chain).unwrap(), sender, nonce, fee, kind },
            signature,
        },
    )
}

fn round_trips<T: Canonical + PartialEq + std::fmt::Debug>(value: &T) -> Result<(), TestCaseError> {
    let bytes = codec::encode(value);
    prop_assert_eq!(&codec::decode::<T>(&bytes).unwrap(), value);
    // Every strict prefix is refused, and so is any extra byte.
    for cut in [0, bytes.len() / 2, bytes.len() - 1] {
        prop_assert!(codec::decode::<T>(&bytes[..cut]).is_err());
    }
    let mut longer = bytes.clone();
    longer.push(0);
    let trailing =
        matches!(codec::decode::<T>(&longer), Err(CodecError::TrailingBytes { .. } | CodecError::TooLarge { .. }));
    prop_assert!(trailing);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn transactions_round_trip(tx in signed_tx()) {
        round_trips(&tx)?;
    }

    #[test]
    fn headers_round_trip(header in header()) {
        round_trips(&header)?;
    }

    #[test]
    fn blocks_round_trip(header in header(), txs in prop::collection::vec(signed_tx(), 0..4), votes in prop::collection::vec(vote(), 0..4)) {
        round_trips(&Block { header, body: chorus_chain::block::Body { txs, votes } })?;
    }

    #[test]
    fn accounts_round_trip(balance in amount(), nonce in any::<u64>(), stake in amount(), votes in prop::collection::vec(address(), 0..30), release in any::<u64>()) {
        let unbonding = vec![Unbonding { amount: stake, release_at: Height::new(release) }];
        round_trips(&Account { balance, nonce, stake, unbonding, votes })?;
    }

    #[test]
    fn decoding_random_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = codec::decode::<SignedTransaction>(&bytes);
        let _ = codec::decode::<Block>(&bytes);
        let _ = codec::decode::<Header>(&bytes);
        let _ = codec::decode::<Account>(&bytes);
        let _ = codec::decode::<StateKey>(&bytes);
    }

    #[test]
    fn mutated_encodings_never_panic_and_never_decode_to_a_different_encoding(tx in signed_tx(), position in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = codec::encode(&tx);
        let index = position.index(bytes.len());
        bytes[index] = byte;
        if let Ok(decoded) = codec::decode::<SignedTransaction>(&bytes) {
            // Whatever decodes is canonical: it encodes back to exactly these bytes.
            prop_assert_eq!(codec::encode(&decoded), bytes);
        }
    }
}

#[test]
fn non_canonical_forms_are_refused() {
    // A bool-like enum tag out of range, and an Option tag of 2, are refused by bincode itself;
    // the chain id's character rule is enforced while decoding.
    let tx = SignedTransaction {
        tx: Transaction {
            chain_id: ChainId::new("abc").unwrap(),
            sender: Address([1; 32]),
            nonce: 1,
            fee: Amount::new(1),
            kind: TxKind::RegisterDelegate,
        },
        signature: Signature([0; 64]),
    };
    let mut bytes = codec::encode(&tx);
    // The chain id string starts after its 8-byte length: make it upper case.
    bytes[8] = b'A';
    assert!(matches!(codec::decode::<SignedTransaction>(&bytes), Err(CodecError::Malformed { .. })));
    let mut bytes = codec::encode(&tx);
    let kind_tag_at = 8 + 3 + 32 + 8 + 16;
    assert_eq!(bytes[kind_tag_at], 3, "RegisterDelegate is variant 3");
    bytes[kind_tag_at] = 9;
    assert!(matches!(codec::decode::<SignedTransaction>(&bytes), Err(CodecError::Malformed { .. })));
}
