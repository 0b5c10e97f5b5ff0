//! The btrfs ioctls the store issues, with the kernel's argument layouts
//! (include/uapi/linux/btrfs.h). This is the crate's only unsafe
//! code: an ioctl hands the kernel a pointer, which the compiler cannot
//! check. Each call passes a descriptor the caller holds open and a
//! pointer to a fully initialised value of exactly the size the request
//! number encodes (asserted at compile time below), which the kernel reads
//! or writes only for the duration of the call.

use super::Subvolume;
use std::os::fd::{AsRawFd, BorrowedFd};

const MAGIC: u8 = 0x94;
const SUBVOLUME_NAME_MAX: usize = 4039;
const PATH_NAME_MAX: usize = 4087;
/// `BTRFS_SUBVOL_SPEC_BY_ID`: the subvolume to delete is named by id.
const SPEC_BY_ID: u64 = 1 << 4;

/// `struct btrfs_ioctl_vol_args_v2`; `name` is the union of the name
/// and the subvolume id.
#[repr(C)]
pub struct VolumeArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; SUBVOLUME_NAME_MAX + 1],
}

/// `struct btrfs_ioctl_vol_args`, for kernels before 5.7.
#[repr(C)]
pub struct VolumeArgs {
    fd: i64,
    name: [u8; PATH_NAME_MAX + 1],
}

/// `struct btrfs_ioctl_get_subvol_info_args`; the four times are
/// `struct btrfs_ioctl_timespec {u64 sec; u32 nsec}`, padded to 16
/// bytes each, kept as words.
#[repr(C)]
pub struct SubvolumeInfo {
    treeid: u64,
    name: [u8; 256],
    parent_id: u64,
    dirid: u64,
    generation: u64,
    flags: u64,
    uuid: [u8; 16],
    parent_uuid: [u8; 16],
    received_uuid: [u8; 16],
    ctransid: u64,
    otransid: u64,
    stransid: u64,
    rtransid: u64,
    times: [u64; 8],
    reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<VolumeArgsV2>() == 4096);
const _: () = assert!(std::mem::size_of::<VolumeArgs>() == 4096);
const _: () = assert!(std::mem::size_of::<SubvolumeInfo>() == 504);

nix::ioctl_write_ptr!(snap_create_v2, MAGIC, 23, VolumeArgsV2);
nix::ioctl_write_ptr!(snap_destroy, MAGIC, 15, VolumeArgs);
nix::ioctl_write_ptr!(snap_destroy_v2, MAGIC, 63, VolumeArgsV2);
nix::ioctl_read!(get_subvol_info, MAGIC, 60, SubvolumeInfo);

fn args_v2() -> VolumeArgsV2 {
    VolumeArgsV2 {
        fd: 0,
        transid: 0,
        flags: 0,
        unused: [0; 4],
        name: [0; SUBVOLUME_NAME_MAX + 1],
    }
}

/// Copies a name into a NUL-terminated buffer; too long a name, or
/// one with a NUL or a slash, is refused as the kernel would.
fn put_name(buffer: &mut [u8], name: &str) -> nix::Result<()> {
    let bytes = name.as_bytes();
    if bytes.is_empty()
        || bytes.len() >= buffer.len()
        || bytes.contains(&0)
        || bytes.contains(&b'/')
    {
        return Err(nix::errno::Errno::EINVAL);
    }
    buffer[..bytes.len()].copy_from_slice(bytes);
    Ok(())
}

fn uuid(bytes: &[u8; 16]) -> String {
    let hex = crate::template::hex(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The subvolume containing `fd` (its root, for a template).
pub fn subvolume_info(fd: BorrowedFd) -> nix::Result<Subvolume> {
    let mut info = SubvolumeInfo {
        treeid: 0,
        name: [0; 256],
        parent_id: 0,
        dirid: 0,
        generation: 0,
        flags: 0,
        uuid: [0; 16],
        parent_uuid: [0; 16],
        received_uuid: [0; 16],
        ctransid: 0,
        otransid: 0,
        stransid: 0,
        rtransid: 0,
        times: [0; 8],
        reserved: [0; 8],
    };
    // SAFETY: `fd` is open for the call, and `info` is an initialised
    // value of the size the request encodes, which the kernel fills.
    unsafe { get_subvol_info(fd.as_raw_fd(), &mut info) }?;
    Ok(Subvolume {
        id: info.treeid,
        uuid: uuid(&info.uuid),
    })
}

/// Makes `name` in `directory` a writable snapshot of the subvolume
/// whose root `source` is.
pub fn snapshot(directory: BorrowedFd, name: &str, source: BorrowedFd) -> nix::Result<()> {
    let mut args = args_v2();
    args.fd = i64::from(source.as_raw_fd());
    put_name(&mut args.name, name)?;
    // SAFETY: both descriptors are open for the call; `args` is an
    // initialised value of the size the request encodes, read by the
    // kernel only during the call.
    unsafe { snap_create_v2(directory.as_raw_fd(), &args) }?;
    Ok(())
}

/// Deletes the subvolume `id` (named `name` in `directory`, for the
/// kernels before 5.7 that delete by name only).
pub fn destroy(directory: BorrowedFd, id: u64, name: &str) -> nix::Result<()> {
    let mut args = args_v2();
    args.flags = SPEC_BY_ID;
    args.name[..8].copy_from_slice(&id.to_ne_bytes());
    // SAFETY: as in `snapshot`.
    match unsafe { snap_destroy_v2(directory.as_raw_fd(), &args) } {
        Ok(_) => Ok(()),
        Err(nix::errno::Errno::ENOTTY) => {
            let mut args = VolumeArgs {
                fd: 0,
                name: [0; PATH_NAME_MAX + 1],
            };
            put_name(&mut args.name, name)?;
            // SAFETY: as in `snapshot`.
            unsafe { snap_destroy(directory.as_raw_fd(), &args) }?;
            Ok(())
        }
        Err(error) => Err(error),
    }
}
