#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A new file readable by its owner only, created in one step: `open(O_CREAT | O_EXCL | O_NOFOLLOW, 0600)`.
/// Nothing that exists at the path (a file, even an empty one, a FIFO, a symlink, a dangling one too) is
/// used or replaced, and the file is never readable by others, not even for a moment (Foundation's
/// `createFile` writes a temporary file with the default mode, renames it into place and only then
/// changes the mode).
public enum PrivateFile {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public static func create(_ path: String) throws -> FileHandle {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let reason = errno == EEXIST ? "exists (Gatehouse never overwrites a file)" : String(cString: strerror(errno))
            throw Failure(description: "\(path): \(reason)")
        }
        return FileHandle(fileDescriptor: fd, closeOnDealloc: true)
    }
}
