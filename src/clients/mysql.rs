//! MySQL/MariaDB client (mysql_async). Placeholder until the clients work lands.
