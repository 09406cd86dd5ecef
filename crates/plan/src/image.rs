//! Image requests: the caller-side path's exchange with the daemon, shared by
//! the thin exec client (no_std) and the daemon so the two cannot drift.
//!
//! The client sends one frame (the daemon's 16-byte frame header, then an
//! [`ImageRequest`] body instead of a JSON Hello) with its open program file
//! attached, and gets one frame back: an [`ImageReply`] body and, when the
//! image is served, the image's files and sealed objects. The reply's plan
//! is the stub's plan for a whole launch; its regions name fds as the stub's
//! layout has them (the program at [`PROGRAM_FD`], the attached fds from
//! [`PROGRAM_FD`]` + 1` on, in order), which the client maps to the numbers
//! the fds arrived at.
//!
//! ```text
//! request:  magic "ZYGIMGQ\0", version u32, flags u32, personality u32,
//!           path_len u32, env_len u32, env_count u32,
//!           path bytes, env entries (NUL-terminated)
//! reply:    magic "ZYGIMGR\0", status u32, fd_count u32, message_len u32,
//!           plan_len u32, message bytes, padding to 8, plan bytes
//! ```

use crate::wire::*;

/// The frame header the daemon's protocol uses ("ZYGF", body length, fd
/// count, reserved; little-endian u32s).
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"ZYGF");
pub const FRAME_HEADER_SIZE: usize = 16;
pub const REQUEST_MAGIC: [u8; 8] = *b"ZYGIMGQ\0";
pub const REPLY_MAGIC: [u8; 8] = *b"ZYGIMGR\0";
/// Bumped on every incompatible change of the bodies above.
pub const IMAGE_VERSION: u32 = 1;
/// The fd number the plan gives the requester's program file (the stub
/// layout's first file fd); attached fds follow it.
pub const PROGRAM_FD: i32 = crate::PLAN_FD + 1;
/// Most bytes of loader environment a request carries.
pub const MAX_REQUEST_ENV: usize = 64 << 10;
/// Most bytes of a request's path (PATH_MAX).
pub const MAX_REQUEST_PATH: usize = 4096;
/// Most fds a reply attaches (the kernel's SCM_MAX_FD is 253).
pub const MAX_REPLY_FDS: usize = 250;

/// Request flag: the client may make `/proc/self/exe` the program (it holds
/// CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN).
pub const FLAG_SET_EXE: u32 = 1;

/// Does an environment entry change what the dynamic loader does (and so
/// which prototype image a program gets)? Besides `LD_*` and
/// `GLIBC_TUNABLES`, glibc's start-up reads the legacy `MALLOC_*_` settings
/// (MALLOC_CHECK_, MALLOC_PERTURB_, MALLOC_ARENA_MAX, ...) before the entry
/// point.
pub fn is_loader_env(kv: &[u8]) -> bool {
    kv.starts_with(b"LD_") || kv.starts_with(b"GLIBC_TUNABLES=") || kv.starts_with(b"MALLOC_")
}

/// What the daemon answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ImageStatus {
    /// The image is attached: map it.
    Image = 0,
    /// Run the file with execve: it needs the kernel (set-ID, file
    /// capabilities, a refused image, a personality that changes the layout).
    Exec = 1,
    /// Not cached yet: exec the file now; the daemon builds the image in the
    /// background for the next run.
    Miss = 2,
    /// The request was wrong or the daemon failed: exec the file.
    Error = 3,
}

impl ImageStatus {
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            0 => Some(ImageStatus::Image),
            1 => Some(ImageStatus::Exec),
            2 => Some(ImageStatus::Miss),
            3 => Some(ImageStatus::Error),
            _ => None,
        }
    }
}

/// Why an image body does not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageWireError {
    Truncated,
    BadMagic,
    BadVersion(u32),
    TooLarge,
    BadStatus(u32),
}

/// A decoded request (borrowing the body).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageRequest<'a> {
    pub flags: u32,
    /// The client's `personality(2)` value.
    pub personality: u32,
    /// The program's path as the client resolved it (messages, comm).
    pub path: &'a [u8],
    /// Loader-relevant environment entries, each NUL-terminated.
    pub env: &'a [u8],
    pub env_count: u32,
}

const REQUEST_FIXED: usize = 8 + 6 * 4;

impl<'a> ImageRequest<'a> {
    /// Does a frame body start like an image request?
    pub fn is_request(body: &[u8]) -> bool {
        body.starts_with(&REQUEST_MAGIC)
    }

    pub fn encoded_len(&self) -> usize {
        REQUEST_FIXED + self.path.len() + self.env.len()
    }

    /// Encode into `out` (at least [`encoded_len`](Self::encoded_len) bytes).
    pub fn encode(&self, out: &mut [u8]) -> usize {
        let e = self.encode_head(out);
        out[e..e + self.env.len()].copy_from_slice(self.env);
        e + self.env.len()
    }

    /// Encode the fixed part and the path only: the env entries go right
    /// after them (for a caller that built them there). Returns where.
    pub fn encode_head(&self, out: &mut [u8]) -> usize {
        out[..8].copy_from_slice(&REQUEST_MAGIC);
        wr_u32(out, 8, IMAGE_VERSION);
        wr_u32(out, 12, self.flags);
        wr_u32(out, 16, self.personality);
        wr_u32(out, 20, self.path.len() as u32);
        wr_u32(out, 24, self.env.len() as u32);
        wr_u32(out, 28, self.env_count);
        out[REQUEST_FIXED..REQUEST_FIXED + self.path.len()].copy_from_slice(self.path);
        REQUEST_FIXED + self.path.len()
    }

    /// Bytes before the path.
    pub const FIXED: usize = REQUEST_FIXED;

    pub fn decode(b: &'a [u8]) -> Result<Self, ImageWireError> {
        if b.len() < REQUEST_FIXED {
            return Err(ImageWireError::Truncated);
        }
        if b[..8] != REQUEST_MAGIC {
            return Err(ImageWireError::BadMagic);
        }
        let version = rd_u32(b, 8);
        if version != IMAGE_VERSION {
            return Err(ImageWireError::BadVersion(version));
        }
        let (path_len, env_len) = (rd_u32(b, 20) as usize, rd_u32(b, 24) as usize);
        if path_len > MAX_REQUEST_PATH || env_len > MAX_REQUEST_ENV {
            return Err(ImageWireError::TooLarge);
        }
        if b.len() != REQUEST_FIXED + path_len + env_len {
            return Err(ImageWireError::Truncated);
        }
        let path = &b[REQUEST_FIXED..REQUEST_FIXED + path_len];
        let env = &b[REQUEST_FIXED + path_len..];
        let env_count = rd_u32(b, 28);
        let nuls = env.iter().filter(|&&c| c == 0).count();
        if nuls != env_count as usize || env.last().is_some_and(|&c| c != 0) {
            return Err(ImageWireError::Truncated);
        }
        Ok(ImageRequest { flags: rd_u32(b, 12), personality: rd_u32(b, 16), path, env, env_count })
    }

    /// The environment entries, without their NULs.
    pub fn env_entries(&self) -> impl Iterator<Item = &'a [u8]> {
        let env = self.env;
        env.split(|&c| c == 0).take(self.env_count as usize)
    }
}

/// A decoded reply (borrowing the body).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageReply<'a> {
    pub status: ImageStatus,
    /// How many fds the frame attaches (files after the program, then
    /// sealed objects; the plan's fd numbers from `PROGRAM_FD + 1` on).
    pub fd_count: u32,
    /// Why the image is not served (for `ZYGOTE_DEBUG`-style diagnostics).
    pub message: &'a [u8],
    /// The stub plan, for [`ImageStatus::Image`].
    pub plan: &'a [u8],
}

const REPLY_FIXED: usize = 8 + 4 * 4;

fn plan_offset(message_len: usize) -> usize {
    (REPLY_FIXED + message_len + 7) & !7
}

impl<'a> ImageReply<'a> {
    pub fn encoded_len(&self) -> usize {
        plan_offset(self.message.len()) + self.plan.len()
    }

    /// Encode into `out` (at least [`encoded_len`](Self::encoded_len) bytes,
    /// zeroed where padding goes).
    pub fn encode(&self, out: &mut [u8]) -> usize {
        out[..8].copy_from_slice(&REPLY_MAGIC);
        wr_u32(out, 8, self.status as u32);
        wr_u32(out, 12, self.fd_count);
        wr_u32(out, 16, self.message.len() as u32);
        wr_u32(out, 20, self.plan.len() as u32);
        out[REPLY_FIXED..REPLY_FIXED + self.message.len()].copy_from_slice(self.message);
        let p = plan_offset(self.message.len());
        out[REPLY_FIXED + self.message.len()..p].fill(0);
        out[p..p + self.plan.len()].copy_from_slice(self.plan);
        p + self.plan.len()
    }

    pub fn decode(b: &'a [u8]) -> Result<Self, ImageWireError> {
        if b.len() < REPLY_FIXED {
            return Err(ImageWireError::Truncated);
        }
        if b[..8] != REPLY_MAGIC {
            return Err(ImageWireError::BadMagic);
        }
        let raw = rd_u32(b, 8);
        let status = ImageStatus::from_u32(raw).ok_or(ImageWireError::BadStatus(raw))?;
        let fd_count = rd_u32(b, 12);
        if fd_count as usize > MAX_REPLY_FDS {
            return Err(ImageWireError::TooLarge);
        }
        let (message_len, plan_len) = (rd_u32(b, 16) as usize, rd_u32(b, 20) as usize);
        if message_len > b.len() || plan_len > b.len() {
            return Err(ImageWireError::Truncated);
        }
        let p = plan_offset(message_len);
        if b.len() != p + plan_len {
            return Err(ImageWireError::Truncated);
        }
        Ok(ImageReply { status, fd_count, message: &b[REPLY_FIXED..REPLY_FIXED + message_len], plan: &b[p..] })
    }

    /// The local fd for a plan fd number: the program file, or the attached
    /// fd it names (`None`: the plan names an fd the reply did not attach).
    pub fn local_fd(plan_fd: i32, program: i32, attached: &[i32]) -> Option<i32> {
        if plan_fd == PROGRAM_FD {
            return Some(program);
        }
        let i = plan_fd.checked_sub(PROGRAM_FD + 1)?;
        attached.get(usize::try_from(i).ok()?).copied()
    }
}

/// The 16-byte frame header for a body of `len` bytes with `fds` fds.
pub fn frame_header(len: usize, fds: usize) -> [u8; FRAME_HEADER_SIZE] {
    let mut h = [0u8; FRAME_HEADER_SIZE];
    wr_u32(&mut h, 0, FRAME_MAGIC);
    wr_u32(&mut h, 4, len as u32);
    wr_u32(&mut h, 8, fds as u32);
    h
}

/// A frame header's (body length, fd count), if the magic is right.
pub fn parse_frame_header(h: &[u8]) -> Option<(u32, u32)> {
    (h.len() >= FRAME_HEADER_SIZE && rd_u32(h, 0) == FRAME_MAGIC).then(|| (rd_u32(h, 4), rd_u32(h, 8)))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    #[test]
    fn request_round_trip_and_checks() {
        let r = ImageRequest {
            flags: FLAG_SET_EXE,
            personality: 0,
            path: b"/usr/bin/true",
            env: b"LD_BIND_NOW=1\0MALLOC_ARENA_MAX=2\0",
            env_count: 2,
        };
        let mut buf = vec![0u8; r.encoded_len()];
        assert_eq!(r.encode(&mut buf), buf.len());
        assert!(ImageRequest::is_request(&buf));
        let d = ImageRequest::decode(&buf).unwrap();
        assert_eq!(d, r);
        let entries: std::vec::Vec<&[u8]> = d.env_entries().collect();
        assert_eq!(entries, [&b"LD_BIND_NOW=1"[..], b"MALLOC_ARENA_MAX=2"]);
        assert_eq!(ImageRequest::decode(&buf[..buf.len() - 1]), Err(ImageWireError::Truncated));
        let mut bad = buf.clone();
        bad[8] = 9;
        assert_eq!(ImageRequest::decode(&bad), Err(ImageWireError::BadVersion(9)));
        let mut bad = buf.clone();
        bad[28] = 3; // an env count the NULs do not match
        assert_eq!(ImageRequest::decode(&bad), Err(ImageWireError::Truncated));
        let mut bad = buf;
        bad[0] = b'X';
        assert_eq!(ImageRequest::decode(&bad), Err(ImageWireError::BadMagic));
    }

    #[test]
    fn reply_round_trip_and_fd_mapping() {
        let plan = [7u8; 24];
        let r = ImageReply { status: ImageStatus::Image, fd_count: 2, message: b"ok!", plan: &plan };
        let mut buf = vec![0u8; r.encoded_len()];
        r.encode(&mut buf);
        assert_eq!(ImageReply::decode(&buf).unwrap(), r);
        assert_eq!(ImageReply::decode(&buf[..buf.len() - 1]), Err(ImageWireError::Truncated));
        let mut bad = buf.clone();
        bad[8] = 77;
        assert_eq!(ImageReply::decode(&bad), Err(ImageWireError::BadStatus(77)));
        assert_eq!(ImageReply::local_fd(PROGRAM_FD, 9, &[20, 21]), Some(9));
        assert_eq!(ImageReply::local_fd(PROGRAM_FD + 2, 9, &[20, 21]), Some(21));
        assert_eq!(ImageReply::local_fd(PROGRAM_FD + 3, 9, &[20, 21]), None);
        assert_eq!(ImageReply::local_fd(-1, 9, &[20, 21]), None);
        let h = frame_header(buf.len(), 2);
        assert_eq!(parse_frame_header(&h), Some((buf.len() as u32, 2)));
    }
}
