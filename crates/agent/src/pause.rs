//! The pause image: the program that holds an `awsvpc` task's network namespace.
//!
//! The ECS agent starts a "pause" container first for every `awsvpc` task; the task's
//! containers then join its network namespace, so they share one address and reach each
//! other on localhost. Nothing can be pulled on the hosts Berth runs on, so the agent makes
//! the image itself: a filesystem tar holding one static executable, `/pause`, which Docker
//! imports (`docker::Docker::ensure_pause_image`).
//!
//! The executable is a hand-made ELF file of 129 (x86_64) or 152 (aarch64) bytes: an ELF
//! header, one program header that maps the whole file, and a loop around a blocking
//! system call. It needs no signal handling: as PID 1 without handlers it ignores SIGTERM,
//! and the agent stops it with SIGKILL. This module only builds bytes; it does no I/O.

/// The repository of the pause image.
pub const PAUSE_REPOSITORY: &str = "berth/pause";
/// The path of the program inside the image.
pub const PAUSE_PATH: &str = "/pause";

/// The pause image for the machine the agent runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseImage {
    /// `berth/pause:<arch>-<hash>`: the hash of the program changes the tag whenever the
    /// program does, so an engine never keeps running an outdated pause image by its name.
    pub reference: String,
    /// The image's root filesystem as an uncompressed tar.
    pub rootfs_tar: Vec<u8>,
}

/// The pause image for this machine's architecture, or why there is none.
pub fn pause_image() -> Result<PauseImage, String> {
    pause_image_for(std::env::consts::ARCH)
}

/// The pause image for `arch` (as `std::env::consts::ARCH` names it).
pub fn pause_image_for(arch: &str) -> Result<PauseImage, String> {
    let program = pause_program(arch).ok_or_else(|| {
        format!("awsvpc networking needs a pause program for this machine's architecture ({arch}); only x86_64 and aarch64 have one")
    })?;
    let reference = format!("{PAUSE_REPOSITORY}:{arch}-{:016x}", fnv1a(&program));
    Ok(PauseImage { reference, rootfs_tar: rootfs_tar(&program) })
}

/// The ELF executable for `arch`; `None` for architectures without one.
pub fn pause_program(arch: &str) -> Option<Vec<u8>> {
    match arch {
        "x86_64" => Some(elf(EM_X86_64, PAGE_4K, &x86_64_code())),
        // 64 KiB alignment also satisfies kernels built with 16 KiB or 64 KiB pages.
        "aarch64" => Some(elf(EM_AARCH64, PAGE_64K, &aarch64_code())),
        _ => None,
    }
}

/// Where the file is mapped: the traditional base of non-PIE executables, aligned to any
/// page size in use.
const BASE: u64 = 0x40_0000;
const ELF_HEADER_SIZE: u16 = 64;
const PROGRAM_HEADER_SIZE: u16 = 56;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const PAGE_4K: u64 = 0x1000;
const PAGE_64K: u64 = 0x1_0000;

/// `loop { pause() }` for x86_64: `pause` (syscall 34) sleeps until a signal arrives; no
/// signal is handled, so it only returns if a debugger interrupts it, and then it loops.
fn x86_64_code() -> Vec<u8> {
    let mut code = vec![];
    code.extend([0xb8, 34, 0, 0, 0]); // mov eax, 34      ; the syscall number of pause
    code.extend([0x0f, 0x05]); //        syscall
    code.extend([0xeb, 0xf7]); //        jmp -9           ; back to the mov (9 bytes up)
    code
}

/// `loop { ppoll(NULL, 0, NULL, NULL, 0) }` for aarch64, which has no `pause` system call:
/// `ppoll` on no descriptors with no timeout blocks until a signal arrives.
fn aarch64_code() -> Vec<u8> {
    // `movz xN, #imm16`: 0xd2800000 | imm16 << 5 | N.
    let movz = |reg: u32, imm: u32| 0xd280_0000 | (imm << 5) | reg;
    let words = [
        movz(0, 0),     // x0 = NULL: no poll descriptors
        movz(1, 0),     // x1 = 0 descriptors
        movz(2, 0),     // x2 = NULL: no timeout
        movz(3, 0),     // x3 = NULL: keep the signal mask
        movz(4, 0),     // x4 = 0: the mask's size, unused without a mask
        movz(8, 73),    // x8 = 73, the syscall number of ppoll
        0xd400_0001,    // svc #0
        0x17ff_fff9u32, // b -7 instructions: back to the first movz (imm26 = -7)
    ];
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// A minimal static ELF64 little-endian executable: the ELF header, one `PT_LOAD` program
/// header mapping the whole file read+execute at [`BASE`], then `code`, which is the entry
/// point. No sections, no interpreter, no dynamic linking.
fn elf(machine: u16, align: u64, code: &[u8]) -> Vec<u8> {
    let headers = u64::from(ELF_HEADER_SIZE + PROGRAM_HEADER_SIZE);
    let file_size = headers + code.len() as u64;
    let mut f = Vec::with_capacity(file_size as usize);
    // --- ELF header (64 bytes) ---
    f.extend([0x7f, b'E', b'L', b'F']); // e_ident[EI_MAG0..3]: the magic number
    f.push(2); //                          e_ident[EI_CLASS]: ELFCLASS64
    f.push(1); //                          e_ident[EI_DATA]: ELFDATA2LSB, little-endian
    f.push(1); //                          e_ident[EI_VERSION]: EV_CURRENT
    f.push(0); //                          e_ident[EI_OSABI]: System V (Linux accepts it)
    f.extend([0; 8]); //                   e_ident[EI_ABIVERSION] and padding, to 16 bytes
    f.extend(2u16.to_le_bytes()); //       e_type: ET_EXEC, a fixed-address executable
    f.extend(machine.to_le_bytes()); //    e_machine: the instruction set
    f.extend(1u32.to_le_bytes()); //       e_version: EV_CURRENT
    f.extend((BASE + headers).to_le_bytes()); // e_entry: the code right after the headers
    f.extend(u64::from(ELF_HEADER_SIZE).to_le_bytes()); // e_phoff: program headers follow
    f.extend(0u64.to_le_bytes()); //       e_shoff: no section headers
    f.extend(0u32.to_le_bytes()); //       e_flags: none defined for these machines
    f.extend(ELF_HEADER_SIZE.to_le_bytes()); // e_ehsize
    f.extend(PROGRAM_HEADER_SIZE.to_le_bytes()); // e_phentsize
    f.extend(1u16.to_le_bytes()); //       e_phnum: one program header
    f.extend(0u16.to_le_bytes()); //       e_shentsize: no sections
    f.extend(0u16.to_le_bytes()); //       e_shnum
    f.extend(0u16.to_le_bytes()); //       e_shstrndx: SHN_UNDEF
    debug_assert_eq!(f.len(), usize::from(ELF_HEADER_SIZE));
    // --- Program header (56 bytes): map the file, headers included, at BASE ---
    f.extend(1u32.to_le_bytes()); //       p_type: PT_LOAD
    f.extend(5u32.to_le_bytes()); //       p_flags: PF_R | PF_X
    f.extend(0u64.to_le_bytes()); //       p_offset: from the start of the file
    f.extend(BASE.to_le_bytes()); //       p_vaddr
    f.extend(BASE.to_le_bytes()); //       p_paddr: unused on Linux; same as p_vaddr
    f.extend(file_size.to_le_bytes()); //  p_filesz: the whole file
    f.extend(file_size.to_le_bytes()); //  p_memsz: nothing beyond it (no .bss)
    f.extend(align.to_le_bytes()); //      p_align: p_vaddr ≡ p_offset modulo this
    debug_assert_eq!(f.len() as u64, headers);
    // --- Code ---
    f.extend(code);
    f
}

/// A tar with the single file `pause`, mode 0755, owned by root.
fn rootfs_tar(program: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_ustar();
    header.set_size(program.len() as u64);
    header.set_mode(0o755);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    let mut builder = tar::Builder::new(Vec::new());
    // Writing into a Vec cannot fail, and the path is a short fixed name.
    builder.append_data(&mut header, PAUSE_PATH.trim_start_matches('/'), program).expect("tar into memory");
    builder.into_inner().expect("tar into memory")
}

/// FNV-1a, 64 bits: a stable fingerprint of the program for the image tag.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_tiny_elf_executables() {
        let x86 = pause_program("x86_64").unwrap();
        assert_eq!(x86.len(), 129);
        assert_eq!(&x86[..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([x86[18], x86[19]]), EM_X86_64);
        let entry = u64::from_le_bytes(x86[24..32].try_into().unwrap());
        assert_eq!(entry, BASE + 120, "the entry point is the first byte after the headers");
        let arm = pause_program("aarch64").unwrap();
        assert_eq!(arm.len(), 120 + 32);
        assert_eq!(u16::from_le_bytes([arm[18], arm[19]]), EM_AARCH64);
        assert!(pause_program("riscv64").is_none());
        assert!(pause_image_for("s390x").unwrap_err().contains("s390x"));
    }

    #[test]
    fn the_image_holds_only_the_program() {
        let image = pause_image_for("x86_64").unwrap();
        assert!(image.reference.starts_with("berth/pause:x86_64-"));
        let mut archive = tar::Archive::new(image.rootfs_tar.as_slice());
        let entries: Vec<(String, u32, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.header().mode().unwrap(), e.size())
            })
            .collect();
        assert_eq!(entries, vec![("pause".to_string(), 0o755, 129)]);
    }

    /// The x86_64 program really runs and blocks: executed on the host, it goes to sleep
    /// in the kernel (state `S`) rather than exiting, crashing or spinning. Outside a
    /// container it is not PID 1, so SIGTERM would end it; the test uses SIGKILL as the
    /// agent does.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    #[test]
    fn the_x86_64_program_blocks_until_killed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pause");
        std::fs::write(&path, pause_program("x86_64").unwrap()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut child = std::process::Command::new(&path).spawn().expect("the kernel runs the ELF file");
        let stat = format!("/proc/{}/stat", child.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            assert!(child.try_wait().unwrap().is_none(), "pause returned or crashed: {:?}", child.try_wait());
            // The state is the field after the parenthesised command name.
            let text = std::fs::read_to_string(&stat).unwrap();
            let state = text.rsplit(')').next().unwrap().split_whitespace().next().unwrap().to_string();
            if state == "S" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never went to sleep; state {state}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9));
    }
}
