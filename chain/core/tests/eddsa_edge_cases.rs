//! The 12 edge cases of "Taming the many EdDSAs" against Chorus's one validity rule.
//!
//! For each case the test states the rule's verdict (and why), and checks that the single
//! path, the batch path alone, and the batch path mixed with valid signatures all agree.

use chorus_chain::crypto::{self, Address, SecretKey, Signature, SignatureError, SignedItem};

struct Case {
    message: Vec<u8>,
    key: Address,
    signature: Signature,
}

fn cases() -> Vec<Case> {
    let text = include_str!("vectors/eddsa_edge_cases.txt");
    let fields: Vec<Vec<u8>> = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| hex::decode(&line[4..]).expect("vector hex"))
        .collect();
    fields
        .chunks(3)
        .map(|chunk| Case {
            message: chunk[0].clone(),
            key: Address(chunk[1].clone().try_into().unwrap()),
            signature: Signature(chunk[2].clone().try_into().unwrap()),
        })
        .collect()
}

/// The rule's verdict on each case, with the paper's description of the case.
const EXPECTED: [Result<(), SignatureError>; 12] = [
    Err(SignatureError::SmallOrderKey),      // 0: small-order A and R, s = 0
    Err(SignatureError::SmallOrderKey),      // 1: small-order A, mixed-order R
    Err(SignatureError::SmallOrderR),        // 2: mixed-order A, small-order R
    Ok(()),                                  // 3: mixed orders, both equations hold
    Ok(()),                                  // 4: mixed orders, only the cofactored equation holds
    Ok(()),                                  // 5: mixed-order A, L-order R, only cofactored holds
    Err(SignatureError::NonCanonicalScalar), // 6: s >= L (s + L)
    Err(SignatureError::NonCanonicalScalar), // 7: s far above L
    Err(SignatureError::NonCanonicalR),      // 8: non-canonical R encoding
    Err(SignatureError::NonCanonicalR),      // 9: non-canonical R encoding
    Err(SignatureError::NonCanonicalKey),    // 10: non-canonical A encoding
    Err(SignatureError::NonCanonicalKey),    // 11: non-canonical A encoding
];

#[test]
fn single_path_verdicts() {
    let cases = cases();
    assert_eq!(cases.len(), 12);
    for (index, case) in cases.iter().enumerate() {
        let verdict = crypto::verify(&case.key, &case.message, &case.signature);
        assert_eq!(verdict, EXPECTED[index], "case {index}");
    }
}

#[test]
fn batch_path_agrees_with_single_on_every_case() {
    let valid_keys: Vec<SecretKey> = (1..=5u8).map(|i| SecretKey::from_seed([i; 32])).collect();
    let valid: Vec<(Address, Vec<u8>, Signature)> = valid_keys
        .iter()
        .map(|key| {
            let message = key.address().0.to_vec();
            (key.address(), message.clone(), key.sign(&message))
        })
        .collect();
    for (index, case) in cases().iter().enumerate() {
        let alone = [SignedItem { signer: &case.key, message: &case.message, signature: &case.signature }];
        let batch_verdict = crypto::verify_batch(&alone).map_err(|error| error.error);
        assert_eq!(batch_verdict, EXPECTED[index], "case {index} alone in a batch");

        // In the middle of a batch of valid signatures: accepted exactly when single accepts,
        // and a rejection names this item.
        let mut mixed: Vec<SignedItem<'_>> =
            valid.iter().map(|(signer, message, signature)| SignedItem { signer, message, signature }).collect();
        mixed.insert(2, alone[0]);
        let mixed_verdict = crypto::verify_batch(&mixed);
        match EXPECTED[index] {
            Ok(()) => assert_eq!(mixed_verdict, Ok(()), "case {index} mixed"),
            Err(error) => assert_eq!(mixed_verdict, Err(crypto::BatchError { index: 2, error }), "case {index} mixed"),
        }
        assert_eq!(crypto::verify_batch_parallel(&mixed).is_ok(), EXPECTED[index].is_ok(), "case {index} parallel");
    }
}

/// Found by the `ed25519_batch` fuzz target: a batch whose first item fails its equation and
/// whose second has a key that is no curve point named the second (its decoding failed first);
/// the batch names the first invalid item, as checking each alone does.
#[test]
fn a_batch_names_its_first_invalid_item_even_when_a_later_one_does_not_decode() {
    let key = SecretKey::from_seed([3; 32]);
    let wrong = key.sign(b"another message");
    let undecodable = Address([0xff; 32]); // y >= p: not a canonical point
    let signature = SecretKey::from_seed([4; 32]).sign(b"m");
    let address = key.address();
    let items = [
        SignedItem { signer: &address, message: b"m", signature: &wrong },
        SignedItem { signer: &undecodable, message: b"m", signature: &signature },
    ];
    assert_eq!(crypto::verify(&address, b"m", &wrong), Err(SignatureError::Equation));
    assert_eq!(crypto::verify(&undecodable, b"m", &signature), Err(SignatureError::NonCanonicalKey));
    let first = Err(crypto::BatchError { index: 0, error: SignatureError::Equation });
    assert_eq!(crypto::verify_batch(&items), first);
    assert_eq!(crypto::verify_batch_parallel(&items), first);
}

mod agreement {
    use chorus_chain::crypto::{self, Address, SecretKey, Signature, SignedItem};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Any mutation of a valid (key, signature) pair gets the same verdict from the single
        /// and the batch path, alone and among valid signatures.
        #[test]
        fn single_and_batch_agree_on_mutated_signatures(
            seed in any::<[u8; 32]>(),
            message in prop::collection::vec(any::<u8>(), 0..64),
            flips in prop::collection::vec((0usize..96, any::<u8>()), 0..3),
        ) {
            let key = SecretKey::from_seed(seed);
            let mut signer = key.address();
            let mut signature = key.sign(&message);
            for (position, byte) in flips {
                if position < 32 {
                    signer.0[position] ^= byte;
                } else {
                    signature.0[position - 32] ^= byte;
                }
            }
            let single = crypto::verify(&signer, &message, &signature);
            let item = SignedItem { signer: &signer, message: &message, signature: &signature };
            prop_assert_eq!(crypto::verify_batch(&[item]).map_err(|error| error.error), single);

            let other = SecretKey::from_seed([9; 32]);
            let (other_address, other_signature): (Address, Signature) = (other.address(), other.sign(b"other"));
            let valid = SignedItem { signer: &other_address, message: b"other", signature: &other_signature };
            prop_assert_eq!(crypto::verify_batch(&[valid, item, valid]).is_ok(), single.is_ok());
        }
    }
}
