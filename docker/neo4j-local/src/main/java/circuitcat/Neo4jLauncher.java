package circuitcat;

import inet.ipaddr.IPAddressString;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import org.neo4j.configuration.GraphDatabaseInternalSettings;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.logging.log4j.Log4jLogProvider;

/**
 * Runs a Neo4j community DBMS whose only connector is Bolt on 127.0.0.1:PORT. Auth is off unless
 * the environment sets NEO4J_LOCAL_PASSWORD: then user neo4j has that password, so tests meet
 * auth as a team server has it. For tests and local poking only (see docs/neo4j.md); never
 * expose it beyond loopback. As on the team server (docker/compose.yml), LOAD CSV can neither
 * read server files (file URLs off, import folder confined to an empty DATA_DIR/import) nor
 * fetch URLs (every address blocked).
 *
 * <p>Usage: {@code java -cp target/classes:target/lib/* circuitcat.Neo4jLauncher DATA_DIR PORT}.
 * Prints {@code BOLT bolt://127.0.0.1:PORT} once the default database is available; SIGTERM
 * shuts the DBMS down cleanly and prints {@code STOPPED}.
 */
public final class Neo4jLauncher {
    // NEO4J_LOCAL_PAGECACHE_MB sizes the page cache (default 512): a benchmark's store of
    // millions of edges needs one that holds it, as a team server's would.
    private static final long PAGECACHE_BYTES =
            Long.parseLong(System.getenv().getOrDefault("NEO4J_LOCAL_PAGECACHE_MB", "512"))
                    * 1024 * 1024;
    private static final long START_TIMEOUT_MS = 120_000;

    private Neo4jLauncher() {}

    public static void main(String[] args) throws InterruptedException, java.io.IOException {
        if (args.length != 2) {
            System.err.println("usage: Neo4jLauncher DATA_DIR PORT");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        int port = Integer.parseInt(args[1]);
        String password = System.getenv().getOrDefault("NEO4J_LOCAL_PASSWORD", "");
        Path imports = Files.createDirectories(home.resolve("import"));

        DatabaseManagementService dbms = new DatabaseManagementServiceBuilder(home)
                .setUserLogProvider(new Log4jLogProvider(System.out))
                .setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", port))
                .setConfig(HttpConnector.enabled, false)
                .setConfig(GraphDatabaseSettings.auth_enabled, !password.isEmpty())
                .setConfig(GraphDatabaseSettings.udc_enabled, false)
                // LOAD CSV reaches nothing outside the catalog: no file URLs, an empty import
                // folder, and URL loading blocked for every IPv4 and IPv6 address.
                .setConfig(GraphDatabaseSettings.allow_file_urls, false)
                .setConfig(GraphDatabaseSettings.load_csv_file_url_root, imports)
                .setConfig(
                        GraphDatabaseInternalSettings.cypher_ip_blocklist,
                        List.of(new IPAddressString("0.0.0.0/0"), new IPAddressString("::/0")))
                .setConfig(GraphDatabaseSettings.pagecache_memory, PAGECACHE_BYTES)
                // Test stores are tiny: do not reserve 256 MiB per transaction log file.
                .setConfig(GraphDatabaseSettings.preallocate_logical_logs, false)
                // Bolt's event loops idle 5 s each before stopping by default: 10 s per stop.
                .setConfig(GraphDatabaseInternalSettings.netty_server_shutdown_quiet_period, 0)
                .build();

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("STOPPING");
            System.out.flush();
            dbms.shutdown();
            System.out.println("STOPPED");
            System.out.flush();
            stopped.countDown();
        }, "neo4j-launcher-shutdown"));

        if (!dbms.database(GraphDatabaseSettings.DEFAULT_DATABASE_NAME).isAvailable(START_TIMEOUT_MS)) {
            System.err.println("database 'neo4j' not available after " + START_TIMEOUT_MS + " ms");
            System.exit(1); // runs the shutdown hook
        }
        if (!password.isEmpty()) {
            // Replaces the initial neo4j/neo4j (which must be changed before use). Embedded
            // transactions run with full rights, and the password travels as a parameter.
            try {
                dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME).executeTransactionally(
                        "ALTER USER neo4j SET PASSWORD $password CHANGE NOT REQUIRED",
                        Map.of("password", password));
            } catch (RuntimeException e) {
                // A restart on its own data folder with the same password: already set.
                if (!String.valueOf(e.getMessage()).contains("cannot be the same")) {
                    throw e;
                }
            }
        }
        System.out.println("BOLT bolt://127.0.0.1:" + port);
        System.out.flush();
        stopped.await(); // the JVM exits once the shutdown hook has finished
    }
}
