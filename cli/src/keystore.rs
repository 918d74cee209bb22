//! The encrypted keystore: one JSON file per key, `<name>.json` in the keystore directory.
//!
//! The 32-byte ed25519 seed is sealed with XChaCha20-Poly1305 under a key derived from the
//! password by argon2id; the argon2 parameters, salt and nonce are stored in the file, so a
//! file stays readable when defaults change. The name and address are stored in the clear
//! (listing needs no password) and bound to the ciphertext as associated data, so editing them
//! makes decryption fail. The directory is created with mode 0700 and files with mode 0600; a
//! key file or password file others can read is refused. A key file's argon2 costs are bounded
//! (`limits::KEYSTORE_ARGON2_*_MAX`) before anything is derived: unlocking a crafted file must
//! not take the machine's memory. Seeds, passwords and derived keys are zeroized when dropped.

use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chorus_chain::{Address, SecretKey, limits};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// argon2id cost of the keys the keystore seals: 64 MiB, 3 passes, 1 lane (about a quarter
/// second on this machine's cores).
pub const DEFAULT_KDF_COSTS: KdfCosts = KdfCosts { m_cost_kib: 64 * 1024, t_cost: 3, p_cost: 1 };
const _: () = assert!(
    DEFAULT_KDF_COSTS.m_cost_kib <= KDF_COSTS_MAX.m_cost_kib
        && DEFAULT_KDF_COSTS.t_cost <= KDF_COSTS_MAX.t_cost
        && DEFAULT_KDF_COSTS.p_cost <= KDF_COSTS_MAX.p_cost,
    "the keystore opens the files it writes"
);

#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("no key named {0:?} in the keystore (chorus wallet list shows them)")]
    NotFound(String),
    #[error("a key named {0:?} already exists")]
    Exists(String),
    #[error("key names are 1 to 64 characters of a-z, 0-9, '-' and '_', got {0:?}")]
    BadName(String),
    #[error("wrong password for key {0:?}")]
    WrongPassword(String),
    #[error("key file {path} is readable by others (mode {mode:o}); run chmod 600 on it")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("password file {path} is readable by others (mode {mode:o}); run chmod 600 on it")]
    PasswordFilePermissions { path: PathBuf, mode: u32 },
    #[error("password file {path} is over {} bytes", limits::PASSWORD_FILE_BYTES_MAX)]
    PasswordFileTooLarge { path: PathBuf },
    #[error(
        "key file {path} asks for argon2 costs of {m_cost_kib} KiB, {t_cost} passes, {p_cost} lanes; at most {} KiB, {} passes, {} lanes are allowed",
        limits::KEYSTORE_ARGON2_M_COST_KIB_MAX,
        limits::KEYSTORE_ARGON2_T_COST_MAX,
        limits::KEYSTORE_ARGON2_P_COST_MAX
    )]
    KdfTooCostly { path: PathBuf, m_cost_kib: u32, t_cost: u32, p_cost: u32 },
    #[error("key file {path} is damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },
    #[error("keystore {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// A key file: the key's name and address in the clear, its seed sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    version: u32,
    name: String,
    address: Address,
    kdf: Kdf,
    cipher: Cipher,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Kdf {
    algorithm: String,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    salt: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cipher {
    algorithm: String,
    nonce: String,
    ciphertext: String,
}

/// A key's public facts, readable without the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub name: String,
    pub address: Address,
}

#[derive(Debug, Clone)]
pub struct Keystore {
    dir: PathBuf,
}

impl Keystore {
    pub fn new(dir: impl Into<PathBuf>) -> Keystore {
        Keystore { dir: dir.into() }
    }

    fn path(&self, name: &str) -> Result<PathBuf, KeystoreError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'_');
        if !valid {
            return Err(KeystoreError::BadName(name.to_owned()));
        }
        Ok(self.dir.join(format!("{name}.json")))
    }

    /// Seals `key` under `password` as `name`. Refuses to overwrite a key.
    pub fn add(&self, name: &str, key: &SecretKey, password: &[u8]) -> Result<Entry, KeystoreError> {
        let path = self.path(name)?;
        let io = |source| KeystoreError::Io { path: self.dir.clone(), source };
        create_private_dir(&self.dir).map_err(io)?;
        let file = seal(name, key, password, DEFAULT_KDF_COSTS)
            .map_err(|reason| KeystoreError::Damaged { path: path.clone(), reason })?;
        let json = serde_json::to_vec_pretty(&file).expect("invariant: a key file serializes");
        write_private(&path, &json).map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => KeystoreError::Exists(name.to_owned()),
            _ => KeystoreError::Io { path: path.clone(), source },
        })?;
        Ok(Entry { name: name.to_owned(), address: key.address() })
    }

    /// Every key's name and address, by name. No password needed.
    pub fn list(&self) -> Result<Vec<Entry>, KeystoreError> {
        let io = |source| KeystoreError::Io { path: self.dir.clone(), source };
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(io(error)),
        };
        let mut keys = Vec::new();
        for entry in entries {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|extension| extension == "json") {
                let file = read_file(&path)?;
                keys.push(Entry { name: file.name, address: file.address });
            }
        }
        keys.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(keys)
    }

    /// The entry for `name`, without decrypting it.
    pub fn entry(&self, name: &str) -> Result<Entry, KeystoreError> {
        let file = self.load(name)?;
        Ok(Entry { name: file.name, address: file.address })
    }

    /// Decrypts `name`'s key.
    pub fn unlock(&self, name: &str, password: &[u8]) -> Result<SecretKey, KeystoreError> {
        let path = self.path(name)?;
        let file = self.load(name)?;
        open(&path, name, file, password, KDF_COSTS_MAX)
    }

    fn load(&self, name: &str) -> Result<KeyFile, KeystoreError> {
        let path = self.path(name)?;
        if !path.exists() {
            return Err(KeystoreError::NotFound(name.to_owned()));
        }
        read_file(&path)
    }
}

impl KeyFile {
    /// The address the file names (in the clear).
    pub fn address(&self) -> Address {
        self.address
    }
}

/// The most argon2 work a key file may ask of `open`.
#[derive(Debug, Clone, Copy)]
pub struct KdfCosts {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

/// What the keystore derives at most (`chain::limits`).
pub const KDF_COSTS_MAX: KdfCosts = KdfCosts {
    m_cost_kib: limits::KEYSTORE_ARGON2_M_COST_KIB_MAX,
    t_cost: limits::KEYSTORE_ARGON2_T_COST_MAX,
    p_cost: limits::KEYSTORE_ARGON2_P_COST_MAX,
};

/// Seals `key` under `password` as a key file named `name`, with a fresh salt and nonce.
pub fn seal(name: &str, key: &SecretKey, password: &[u8], costs: KdfCosts) -> Result<KeyFile, String> {
    let salt: [u8; 16] = rand::random();
    let nonce: [u8; 24] = rand::random();
    let address = key.address();
    let sealing_key = derive(password, &salt, costs.m_cost_kib, costs.t_cost, costs.p_cost)?;
    let cipher = XChaCha20Poly1305::new_from_slice(sealing_key.as_slice()).expect("invariant: a 32-byte key");
    let seed = Zeroizing::new(key.seed());
    let ciphertext = cipher
        .encrypt(&XNonce::from(nonce), Payload { msg: seed.as_slice(), aad: &associated_data(name, &address) })
        .expect("invariant: a 32-byte message encrypts");
    Ok(KeyFile {
        version: 1,
        name: name.to_owned(),
        address,
        kdf: Kdf {
            algorithm: "argon2id".to_owned(),
            m_cost_kib: costs.m_cost_kib,
            t_cost: costs.t_cost,
            p_cost: costs.p_cost,
            salt: hex::encode(salt),
        },
        cipher: Cipher {
            algorithm: "xchacha20poly1305".to_owned(),
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ciphertext),
        },
    })
}

/// A key file's bytes as read from `path`: its JSON, or why it is damaged.
pub fn parse_key_file(path: &Path, bytes: &[u8]) -> Result<KeyFile, KeystoreError> {
    serde_json::from_slice(bytes)
        .map_err(|error| KeystoreError::Damaged { path: path.to_owned(), reason: error.to_string() })
}

/// Decrypts a key file's key (`name`, read from `path`) with `password`; argon2 costs over
/// `max` are refused before any key is derived.
pub fn open(
    path: &Path,
    name: &str,
    file: KeyFile,
    password: &[u8],
    max: KdfCosts,
) -> Result<SecretKey, KeystoreError> {
    let path = path.to_owned();
    let damaged = |reason: String| KeystoreError::Damaged { path: path.clone(), reason };
    if file.kdf.algorithm != "argon2id" || file.cipher.algorithm != "xchacha20poly1305" {
        return Err(damaged(format!("unknown algorithms {} / {}", file.kdf.algorithm, file.cipher.algorithm)));
    }
    let Kdf { m_cost_kib, t_cost, p_cost, .. } = file.kdf;
    if m_cost_kib > max.m_cost_kib || t_cost > max.t_cost || p_cost > max.p_cost {
        return Err(KeystoreError::KdfTooCostly { path, m_cost_kib, t_cost, p_cost });
    }
    let salt = hex::decode(&file.kdf.salt).map_err(|error| damaged(format!("salt: {error}")))?;
    let nonce: [u8; 24] = hex::decode(&file.cipher.nonce)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| damaged("nonce is not 24 hex bytes".to_owned()))?;
    let ciphertext = hex::decode(&file.cipher.ciphertext).map_err(|error| damaged(format!("ciphertext: {error}")))?;
    let sealing_key = derive(password, &salt, m_cost_kib, t_cost, p_cost).map_err(damaged)?;
    let cipher = XChaCha20Poly1305::new_from_slice(sealing_key.as_slice()).expect("invariant: a 32-byte key");
    let aad = associated_data(&file.name, &file.address);
    let seed = Zeroizing::new(
        cipher
            .decrypt(&XNonce::from(nonce), Payload { msg: &ciphertext, aad: &aad })
            .map_err(|_| KeystoreError::WrongPassword(name.to_owned()))?,
    );
    let seed = Zeroizing::new(
        <[u8; 32]>::try_from(seed.as_slice()).map_err(|_| damaged("the sealed seed is not 32 bytes".to_owned()))?,
    );
    let key = SecretKey::from_seed(*seed);
    if key.address() != file.address {
        return Err(damaged("the sealed key does not match the stored address".to_owned()));
    }
    Ok(key)
}

fn associated_data(name: &str, address: &Address) -> Vec<u8> {
    format!("chorus-keystore/v1/{name}/{address}").into_bytes()
}

fn derive(password: &[u8], salt: &[u8], m_cost: u32, t_cost: u32, p_cost: u32) -> Result<Zeroizing<[u8; 32]>, String> {
    let params =
        Params::new(m_cost, t_cost, p_cost, Some(32)).map_err(|error| format!("argon2 parameters: {error}"))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password, salt, key.as_mut_slice())
        .map_err(|error| format!("argon2: {error}"))?;
    Ok(key)
}

fn read_file(path: &Path) -> Result<KeyFile, KeystoreError> {
    let io = |source| KeystoreError::Io { path: path.to_owned(), source };
    let metadata = std::fs::metadata(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeystoreError::Permissions { path: path.to_owned(), mode });
        }
    }
    if metadata.len() > limits::KEY_FILE_BYTES_MAX {
        return Err(KeystoreError::Damaged {
            path: path.to_owned(),
            reason: format!("{} bytes is too large for a key file", metadata.len()),
        });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    parse_key_file(path, &bytes)
}

/// Creates `dir` and its missing parents with mode 0700: the keystore's listing is nobody
/// else's business. An existing directory is left as it is.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Reads a password file (`--password-file`): refused if others can read it, as key files are,
/// or if it is over [`limits::PASSWORD_FILE_BYTES_MAX`]. Trailing line ends are not part of
/// the password. The bytes are read into one buffer of fixed capacity, zeroized when dropped.
pub fn read_password_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
    use std::io::Read;
    let io = |source| KeystoreError::Io { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeystoreError::PasswordFilePermissions { path: path.to_owned(), mode });
        }
    }
    let limit_bytes = limits::PASSWORD_FILE_BYTES_MAX;
    // One byte over the limit tells a file at the limit from a larger one; the capacity is
    // never exceeded, so the buffer is never moved and leaves no copy behind.
    let mut password = Zeroizing::new(Vec::with_capacity(limit_bytes as usize + 1));
    file.take(limit_bytes + 1).read_to_end(&mut password).map_err(io)?;
    if password.len() as u64 > limit_bytes {
        return Err(KeystoreError::PasswordFileTooLarge { path: path.to_owned() });
    }
    while matches!(password.last(), Some(b'\n' | b'\r')) {
        password.pop();
    }
    Ok(password)
}

/// Creates `path` with mode 0600 (never overwriting) and writes `bytes` durably.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    // The new name survives a crash too: the directory's entry is synced.
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_with_their_password_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Keystore::new(dir.path().join("keys"));
        let key = SecretKey::from_seed([3; 32]);
        let entry = store.add("alice", &key, b"correct horse").expect("add");
        assert_eq!(entry.address, key.address());
        assert!(matches!(store.add("alice", &key, b"x"), Err(KeystoreError::Exists(_))));
        assert!(matches!(store.add("Alice!", &key, b"x"), Err(KeystoreError::BadName(_))));
        assert_eq!(store.list().expect("list"), vec![entry]);
        assert_eq!(store.unlock("alice", b"correct horse").expect("unlock").seed(), key.seed());
        assert!(matches!(store.unlock("alice", b"wrong"), Err(KeystoreError::WrongPassword(_))));
        assert!(matches!(store.unlock("bob", b"x"), Err(KeystoreError::NotFound(_))));

        let path = dir.path().join("keys/alice.json");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            assert!(matches!(store.unlock("alice", b"correct horse"), Err(KeystoreError::Permissions { .. })));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        // The file never holds the seed in the clear.
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains(&hex::encode(key.seed())));
        // Editing the clear-text address breaks the seal instead of misleading `list`.
        let tampered = text.replace(&key.address().to_string(), &SecretKey::from_seed([4; 32]).address().to_string());
        std::fs::remove_file(&path).expect("rm");
        write_private(&path, tampered.as_bytes()).expect("write");
        assert!(store.unlock("alice", b"correct horse").is_err());
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn the_keystore_directory_and_its_missing_parents_are_created_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = dir.path().join("home/.chorus/keystore");
        Keystore::new(&keys).add("alice", &SecretKey::from_seed([3; 32]), b"pw").expect("add");
        for created in [keys.as_path(), &dir.path().join("home/.chorus")] {
            assert_eq!(mode(created), 0o700, "{} has mode {:o}", created.display(), mode(created));
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_password_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("password");
        std::fs::write(&path, "correct horse\r\n").expect("write");
        for exposed in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(exposed)).expect("chmod");
            match read_password_file(&path) {
                Err(KeystoreError::PasswordFilePermissions { path: refused, mode }) => {
                    assert_eq!((refused, mode), (path.clone(), exposed));
                }
                other => panic!("mode {exposed:o}: expected a refusal, got {other:?}"),
            }
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(read_password_file(&path).expect("a private file").as_slice(), b"correct horse");

        let large = vec![b'x'; limits::PASSWORD_FILE_BYTES_MAX as usize + 1];
        std::fs::write(&path, &large).expect("write");
        assert!(matches!(read_password_file(&path), Err(KeystoreError::PasswordFileTooLarge { .. })));
        std::fs::write(&path, &large[1..]).expect("write");
        assert_eq!(read_password_file(&path).expect("at the limit").len(), large.len() - 1);
    }

    /// A crafted key file's argon2 costs are refused before any key is derived: before the
    /// bound, the first case below made unlock allocate 256 MiB, the others 4 TiB or 2^32 passes.
    #[test]
    fn a_key_file_asking_for_more_argon2_work_than_allowed_is_refused_before_deriving() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Keystore::new(dir.path());
        let key = SecretKey::from_seed([5; 32]);
        store.add("alice", &key, b"pw").expect("add");
        let path = dir.path().join("alice.json");
        let honest: KeyFile = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("a key file");
        let m_max = limits::KEYSTORE_ARGON2_M_COST_KIB_MAX;
        let (t_max, p_max) = (limits::KEYSTORE_ARGON2_T_COST_MAX, limits::KEYSTORE_ARGON2_P_COST_MAX);
        for (m_cost_kib, t_cost, p_cost) in
            [(m_max + 1, 1, 1), (u32::MAX, 1, 1), (1024, u32::MAX, 1), (1024, t_max + 1, 1), (1024, 1, p_max + 1)]
        {
            let mut crafted = honest.clone();
            crafted.kdf.m_cost_kib = m_cost_kib;
            crafted.kdf.t_cost = t_cost;
            crafted.kdf.p_cost = p_cost;
            std::fs::remove_file(&path).expect("rm");
            write_private(&path, &serde_json::to_vec(&crafted).expect("json")).expect("write");
            match store.unlock("alice", b"pw") {
                Err(KeystoreError::KdfTooCostly { path: refused, .. }) => assert_eq!(refused, path),
                other => panic!("costs {m_cost_kib} KiB, {t_cost}, {p_cost}: expected a refusal, got {other:?}"),
            }
        }
        // The honest file still opens.
        std::fs::remove_file(&path).expect("rm");
        write_private(&path, &serde_json::to_vec(&honest).expect("json")).expect("write");
        assert_eq!(store.unlock("alice", b"pw").expect("unlock").seed(), key.seed());
    }
}
