# Alto's microVM guest agent: a static x86-64 Linux program of 688 bytes, put in each guest's
# supervisor disk and started by the supervisor (microvm-prelude.sh) with the signal port as its
# input and the control port on descriptor 3. It reads 64-byte records (signalMessage in
# microvm.ts) until its input ends:
# - ALTOTERM sends SIGTERM to PID 1 (the supervisor, which passes it on to the app);
# - ALTOKILL sends SIGKILL to every process (-1);
# - ALTOSEED writes the 32 bytes at offset 24 to /dev/urandom, has the kernel reseed its
#   generator from them at once (ioctl RNDRESEEDCRNG: a write alone only mixes them in, for a
#   reseed up to a minute later), sets the clock (clock_settime, CLOCK_REALTIME) to the timespec
#   at offset 8, and writes `alto:reseeded N` on descriptor 3, N the sum of what failed: 1 the
#   seed, 2 the reseed, 4 the clock (reseedFailures in microvm.ts);
# - ALTOFRZE and ALTOTHAW freeze and thaw the filesystem mounted at the directory named at offset
#   8 (NUL-terminated; ioctl FIFREEZE, FITHAW, as fsfreeze(8) does) and write `alto:frozen N` or
#   `alto:thawed N` on descriptor 3, N 0 when done, 1 when the directory did not open, 2 when the
#   kernel refused (microvm-volume-backup.ts);
# - anything else is ignored.
#
# The file is the whole program, ELF header included (no linker, no libc); the record it reads
# into is the 64 bytes past the file's end (the segment's memory size is the file's plus 64).
# guest/agent is this file assembled; after a change, assemble it again with
#   as --64 -o agent.o agent.s && objcopy -O binary -j .text agent.o agent
# (scripts.test.ts checks that guest/agent is what this file assembles to).

	.intel_syntax noprefix
	.set base, 0x400000	# where the file is loaded
	.set RECORD_BYTES, 64

	.text
elf_header:
	.byte 0x7f, 'E', 'L', 'F', 2, 1, 1, 0	# ELF, 64-bit, little-endian, System V
	.zero 8
	.short 2			# an executable
	.short 0x3e			# for x86-64
	.long 1				# ELF version 1
	.quad base + (next - elf_header)	# entry point
	.quad program_header - elf_header	# program headers follow the header
	.quad 0				# no section headers
	.long 0				# no flags
	.short program_header - elf_header	# this header's size
	.short code - program_header	# one program header's size
	.short 1			# one program header
	.short 0, 0, 0			# no section headers
program_header:
	# One loadable segment, readable, writable and executable: the whole file, then the record.
	.long 1				# PT_LOAD
	.long 7				# PF_R | PF_W | PF_X
	.quad 0				# from the file's start
	.quad base			# virtual address
	.quad base			# physical address
	.quad record - elf_header	# bytes in the file
	.quad record - elf_header + RECORD_BYTES	# bytes in memory
	.quad 0x1000			# alignment

code:
next:	xor r12d, r12d			# bytes of the record read so far
fill:	xor eax, eax			# read(0, record + r12, 64 - r12)
	xor edi, edi
	lea rsi, [rip + record]
	add rsi, r12
	mov edx, RECORD_BYTES
	sub edx, r12d
	syscall
	cmp rax, -4			# EINTR: try again
	je fill
	test rax, rax
	jle done			# end of input, or an error
	add r12, rax
	cmp r12, RECORD_BYTES
	jb fill
	mov rax, qword ptr [rip + record]
	movabs rbx, 0x4d5245544f544c41	# "ALTOTERM"
	cmp rax, rbx
	je term
	movabs rbx, 0x4c4c494b4f544c41	# "ALTOKILL"
	cmp rax, rbx
	je kill
	movabs rbx, 0x444545534f544c41	# "ALTOSEED"
	cmp rax, rbx
	je seed
	movabs rbx, 0x455a52464f544c41	# "ALTOFRZE"
	cmp rax, rbx
	je freeze
	movabs rbx, 0x574148544f544c41	# "ALTOTHAW"
	cmp rax, rbx
	je thaw
	jmp next			# anything else: ignored

term:	mov eax, 62			# kill(1, SIGTERM)
	mov edi, 1
	mov esi, 15
	syscall
	jmp next

kill:	mov eax, 62			# kill(-1, SIGKILL)
	mov edi, -1
	mov esi, 9
	syscall
	jmp next

seed:	xor r14d, r14d			# what failed: 1 the seed, 2 the reseed, 4 the clock
	mov eax, 2			# open("/dev/urandom", O_WRONLY)
	lea rdi, [rip + urandom]
	mov esi, 1
	xor edx, edx
	syscall
	test eax, eax
	js noseed
	mov r13d, eax
	mov eax, 1			# write(fd, record + 24, 32)
	mov edi, r13d
	lea rsi, [rip + record + 24]
	mov edx, 32
	syscall
	cmp rax, 32
	je reseed
	or r14d, 1			# not all of the seed written
reseed:	mov eax, 16			# ioctl(fd, RNDRESEEDCRNG)
	mov edi, r13d
	mov esi, 0x5207
	xor edx, edx
	syscall
	test rax, rax
	jz shut
	or r14d, 2			# the kernel did not reseed
shut:	mov eax, 3			# close(fd)
	mov edi, r13d
	syscall
	jmp clock
noseed:	or r14d, 3			# no /dev/urandom: neither seed nor reseed
clock:	mov eax, 227			# clock_settime(CLOCK_REALTIME, record + 8)
	xor edi, edi
	lea rsi, [rip + record + 8]
	syscall
	test rax, rax
	jz answer
	or r14d, 4			# the clock was not set
answer:	add r14d, 0x30			# the digit of what failed (0: nothing)
	mov byte ptr [rip + reseeded + 14], r14b
	mov eax, 1			# write(3, reseeded, 16)
	mov edi, 3
	lea rsi, [rip + reseeded]
	mov edx, 16
	syscall
	jmp next

freeze:	mov r15d, 0xc0045877		# FIFREEZE
	lea rbx, [rip + frozen]
	jmp fsop
thaw:	mov r15d, 0xc0045878		# FITHAW
	lea rbx, [rip + thawed]
fsop:	mov byte ptr [rip + record + RECORD_BYTES - 1], 0	# the path ends within the record
	mov r14d, 0x31			# '1': the directory did not open
	mov eax, 2			# open(record + 8, O_RDONLY | O_DIRECTORY)
	lea rdi, [rip + record + 8]
	mov esi, 0x10000
	xor edx, edx
	syscall
	test eax, eax
	js fsanswer
	mov r13d, eax
	mov eax, 16			# ioctl(fd, FIFREEZE or FITHAW, 0)
	mov edi, r13d
	mov esi, r15d
	xor edx, edx
	syscall
	mov r14d, 0x30			# '0': done
	test rax, rax
	jz fsclose
	mov r14d, 0x32			# '2': the kernel refused
fsclose:
	mov eax, 3			# close(fd)
	mov edi, r13d
	syscall
fsanswer:
	mov byte ptr [rbx + 12], r14b	# the digit of the answer
	mov eax, 1			# write(3, answer, 14)
	mov edi, 3
	mov rsi, rbx
	mov edx, 14
	syscall
	jmp next

done:	mov eax, 60			# exit(0)
	xor edi, edi
	syscall

urandom:
	.ascii "/dev/urandom\0"
reseeded:
	.ascii "alto:reseeded 0\n"	# the digit is written over
frozen:
	.ascii "alto:frozen 0\n"	# likewise
thawed:
	.ascii "alto:thawed 0\n"
	.balign 8, 0			# the record is 8-aligned
record:					# past the file's end: the 64 bytes a record is read into
